"""Who is calling: bearer tokens mapped to tenants, the mesh's own roles, and scoped credentials.

The tokens file (MLAAS_AUTH_TOKENS_FILE) is YAML or JSON: `{token: tenant, ...}`. Tokens are kept
only as sha256 digests in memory. Without a file the mesh runs open: every caller is the
anonymous tenant "" and sees everything, and servers bind to loopback only.

The mesh's components do not share one all-powerful identity. Each has a role with the least
privilege its job needs (the rules per rpc are in `mlaas.services.permissions`):
- the scheduler, the monitor and the registry hold tokens of their role in the tokens file;
- a runtime and a training job hold a credential the scheduler minted for them alone, signed with
  the mesh key (MLAAS_MESH_KEY_FILE): it names the deployment (or job) and the one model version
  it may read, so that a runtime cannot fetch models placed elsewhere nor feed another
  deployment's monitoring.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlaas.errors import Unauthenticated
from mlaas.services.private_files import write_private
from mlaas.services.settings import ServerSettings

ANONYMOUS = ""
# Roles of the mesh's own components (reserved tenant names).
SCHEDULER = "mlaas-scheduler"
MONITOR = "mlaas-monitor"
REGISTRY = "mlaas-registry"
RUNTIME = "mlaas-runtime"  # minted per replica by the scheduler
TRAINER = "mlaas-trainer"  # minted per training job by the scheduler
FILE_ROLES = (SCHEDULER, MONITOR, REGISTRY)
MINTED_ROLES = (RUNTIME, TRAINER)
ROLES = FILE_ROLES + MINTED_ROLES
# Health checks stay open so that load balancers and orchestrators can probe without a token.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
SCOPED_PREFIX = "mlaas-scoped."


@dataclass(frozen=True)
class Identity:
    """A caller: a tenant, or a role of the mesh. Minted credentials carry their scope: the
    deployment (or training job) they were made for and the NAME:VERSION they may read."""

    tenant: str
    scope: str = ""
    model: str = ""
    # A runtime's during a trial: the challenger version it may also read and report on.
    challenger: int = 0

    @property
    def role(self) -> str:
        return self.tenant if self.tenant in ROLES else ""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _file_digest(entry: str) -> bytes:
    """A tokens file names a token, or its digest as `sha256:HEX` (a file that holds no secret)."""
    if entry.startswith("sha256:"):
        return bytes.fromhex(entry.removeprefix("sha256:"))
    return _digest(entry)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` header; "" when malformed, None when absent."""
    header = next((v for k, v in metadata or () if k == "authorization"), None)
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode(errors="replace")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def add_mesh_identities(tokens_file: str | Path, dest_dir: Path) -> dict[str, str]:
    """Writes, readable by their owner only, `dest_dir/mesh-tokens.yaml` (the tenants' tokens of
    `tokens_file` plus the digest of a new token per file role, so that the file handed to
    runtimes holds no role's token) and `dest_dir/mesh.key` (the key that signs runtime and job
    credentials). Returns {role: token}."""
    Authenticator.from_file(tokens_file)  # a broken file fails here, with its reason
    tokens = yaml.safe_load(Path(tokens_file).read_text())
    reserved = sorted({t for t in tokens.values() if str(t) in ROLES})
    if reserved:
        raise ValueError(f"{tokens_file}: the tenant names {reserved} are the mesh's own roles")
    roles = {role: secrets.token_urlsafe(32) for role in FILE_ROLES}
    digests = {f"sha256:{_digest(token).hex()}": role for role, token in roles.items()}
    write_private(dest_dir / "mesh-tokens.yaml", yaml.safe_dump({**tokens, **digests}))
    write_private(dest_dir / "mesh.key", secrets.token_hex(32))
    return roles


class MeshKey:
    """Signs and checks the credentials the scheduler mints for runtimes and training jobs."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("the mesh key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path | None) -> MeshKey | None:
        return cls(Path(path).read_text().strip().encode()) if path else None

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def mint(self, role: str, scope: str, model: str, challenger: int = 0) -> str:
        """A credential for `role` in `scope` (a deployment, a job) reading `model` (NAME:VERSION)
        and, during a trial, also version `challenger` of it."""
        if role not in MINTED_ROLES:
            raise ValueError(f"only {MINTED_ROLES} credentials are minted")
        fields = {"r": role, "s": scope, "m": model, **({"c": challenger} if challenger else {})}
        claims = json.dumps(fields, separators=(",", ":"))
        body = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
        return f"{SCOPED_PREFIX}{body}.{self._sign(body)}"

    def verify(self, token: str) -> Identity | None:
        body, _, signature = token.removeprefix(SCOPED_PREFIX).partition(".")
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return Identity(claims["r"], claims["s"], claims["m"], int(claims.get("c", 0)))


class Authenticator:
    def __init__(self, tokens: dict[str, str] | None, key: MeshKey | None = None):
        self._tenants = None if tokens is None else {_file_digest(t): tenant for t, tenant in tokens.items()}
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path | None, key_file: str | Path | None = None) -> Authenticator:
        if not path:
            return cls(None)
        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, dict) or not data:
            raise ValueError(f"{path}: expected a mapping of token to tenant")
        tokens = {str(token): str(tenant) for token, tenant in data.items()}
        if any(not tenant for tenant in tokens.values()):
            raise ValueError(f"{path}: every token needs a non-empty tenant")
        if any(tenant in MINTED_ROLES for tenant in tokens.values()):
            raise ValueError(f"{path}: {MINTED_ROLES} credentials are minted by the scheduler, not listed")
        return cls(tokens, MeshKey.from_file(key_file))

    @classmethod
    def for_server(cls, server: ServerSettings) -> Authenticator:
        return cls.from_file(server.auth_tokens_file, server.mesh_key_file)

    @property
    def enabled(self) -> bool:
        return self._tenants is not None

    def identity(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        """The caller from its call metadata; raises Unauthenticated."""
        if self._tenants is None:
            return Identity(ANONYMOUS)
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        if not token:
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        if token.startswith(SCOPED_PREFIX) and self._key is not None:
            try:
                identity = self._key.verify(token)
            except (ValueError, KeyError, TypeError):
                identity = None
            if identity is not None:
                return identity
        tenant = self._tenants.get(_digest(token))
        if tenant is None:
            raise Unauthenticated("unknown bearer token")
        return Identity(tenant)

    def tenant(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        return self.identity(metadata).tenant

    def is_role(self, tenant: str, *roles: str) -> bool:
        """The caller is one of the mesh's components in one of `roles`."""
        return self.enabled and tenant in roles

    def is_public(self, method: str) -> bool:
        return method.startswith(PUBLIC_METHOD_PREFIXES)

"""Who is calling: bearer tokens mapped to tenants, the mesh's own roles, and scoped credentials.

The tokens file (MLAAS_AUTH_TOKENS_FILE) is YAML or JSON: `{token: tenant, ...}`. Tokens are kept
only as sha256 digests in memory. Without a file the mesh runs open: every caller is the
anonymous tenant "" and sees everything, and servers bind to loopback only.

The mesh's components do not share one all-powerful identity. Each has a role with the least
privilege its job needs (the rules per rpc are in `mlaas.services.permissions`):
- the scheduler, the monitor and the registry hold tokens of their role in the tokens file;
- a runtime and a training job hold a credential the scheduler minted for them alone, a JWT
  signed with the mesh key (MLAAS_MESH_KEY_FILE): it names the deployment (or job) and the one
  model version it may read, so that a runtime cannot fetch models placed elsewhere nor feed
  another deployment's monitoring; the services it may be shown to (its audience); and when it
  expires. The scheduler renews a runtime's while its deployment lives, and the registry and the
  Monitor refuse one whose deployment or job is gone (monitor_svc/access.py, registry_svc).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
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
# The services each minted role calls, and so the audience of its credentials.
AUDIENCES = {RUNTIME: (REGISTRY, MONITOR), TRAINER: (REGISTRY,)}
CREDENTIAL_SECONDS = 600.0  # a minted credential's default lifetime (MLAAS_CREDENTIAL_SECONDS)
CLOCK_LEEWAY_SECONDS = 5.0
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
    """Signs and checks the credentials the scheduler mints for runtimes and training jobs (JWTs,
    HS256, behind SCOPED_PREFIX so that they are told from tenants' tokens at a glance)."""

    # jwt (and cryptography under it) is imported where a credential is minted or checked: a
    # runtime's supervising process only reads the key, and the import cost it 0.04 CPU-s.

    def __init__(self, key: bytes):
        if len(key) < 32:
            raise ValueError("the mesh key must be at least 32 bytes (HS256)")
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path | None) -> MeshKey | None:
        return cls(Path(path).read_text().strip().encode()) if path else None

    def mint(self, role: str, scope: str, model: str, challenger: int = 0, seconds: float = CREDENTIAL_SECONDS) -> str:
        """A credential for `role` in `scope` (a deployment, a job) reading `model` (NAME:VERSION)
        and, during a trial, also version `challenger` of it, valid for `seconds`."""
        if role not in MINTED_ROLES:
            raise ValueError(f"only {MINTED_ROLES} credentials are minted")
        now = time.time()
        claims = {
            "iss": SCHEDULER, "aud": list(AUDIENCES[role]), "sub": scope, "role": role, "model": model,
            "iat": int(now), "exp": int(now + seconds), "jti": uuid.uuid4().hex,
            **({"challenger": challenger} if challenger else {}),
        }  # fmt: skip
        import jwt

        return SCOPED_PREFIX + jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, audience: str) -> Identity:
        """The credential's identity if it is the mesh's, meant for `audience` and not expired;
        raises Unauthenticated with the reason."""
        import jwt

        try:
            claims = jwt.decode(
                token.removeprefix(SCOPED_PREFIX), self._key, algorithms=["HS256"], audience=audience,
                issuer=SCHEDULER, leeway=CLOCK_LEEWAY_SECONDS, options={"require": ["exp", "aud", "sub"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "the credential expired (the scheduler renews it while its deployment lives)"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the credential is not meant for {audience or 'this server'}") from None
        except jwt.PyJWTError as err:
            raise Unauthenticated(f"invalid credential: {err}") from None
        if claims.get("role") not in MINTED_ROLES:
            raise Unauthenticated("invalid credential: no minted role")
        return Identity(claims["role"], claims["sub"], str(claims.get("model", "")), int(claims.get("challenger", 0)))


class Authenticator:
    """`audience`: the role of the service that checks (minted credentials not meant for it are
    refused); "" for one that takes none (a runtime, the scheduler)."""

    def __init__(self, tokens: dict[str, str] | None, key: MeshKey | None = None, audience: str = ""):
        self._tenants = None if tokens is None else {_file_digest(t): tenant for t, tenant in tokens.items()}
        self._key = key
        self._audience = audience

    @classmethod
    def from_file(
        cls, path: str | Path | None, key_file: str | Path | None = None, audience: str = ""
    ) -> Authenticator:
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
        return cls(tokens, MeshKey.from_file(key_file), audience)

    @classmethod
    def for_server(cls, server: ServerSettings, audience: str = "") -> Authenticator:
        return cls.from_file(server.auth_tokens_file, server.mesh_key_file, audience)

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
            return self._key.verify(token, self._audience)
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

"""Bearer-token authentication: a tokens file maps each token to a tenant.

The file (MLAAS_AUTH_TOKENS_FILE) is YAML or JSON: `{token: tenant, ...}`. Tokens are kept
only as sha256 digests in memory. Without a file the mesh runs open: every caller is the
anonymous tenant "" and sees everything, and servers bind to loopback only.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import yaml

from mlaas.errors import Unauthenticated

ANONYMOUS = ""
# The tenant of the mesh's own components (scheduler, monitor, runtimes, the registry's deletion
# guard): it reads every tenant's models and deployments, so that a runtime can fetch the model
# it serves whoever owns it. Give its token only to the mesh's components.
MESH_TENANT = "mlaas-mesh"
# Health checks stay open so that load balancers and orchestrators can probe without a token.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` header; "" when malformed, None when absent."""
    header = next((v for k, v in metadata or () if k == "authorization"), None)
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode(errors="replace")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def add_mesh_token(tokens_file: str | Path, dest: Path) -> str:
    """Writes `dest` (readable by its owner only): the tokens of `tokens_file` plus a new token
    of the mesh's own tenant, and returns that token, for the mesh's components."""
    Authenticator.from_file(tokens_file)  # a broken file fails here, with its reason
    tokens = yaml.safe_load(Path(tokens_file).read_text())
    token = secrets.token_urlsafe(32)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump({**tokens, token: MESH_TENANT}, out)
    return token


class Authenticator:
    def __init__(self, tokens: dict[str, str] | None):
        self._tenants = None if tokens is None else {_digest(t): tenant for t, tenant in tokens.items()}

    @classmethod
    def from_file(cls, path: str | Path | None) -> Authenticator:
        if not path:
            return cls(None)
        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, dict) or not data:
            raise ValueError(f"{path}: expected a mapping of token to tenant")
        tokens = {str(token): str(tenant) for token, tenant in data.items()}
        if any(not tenant for tenant in tokens.values()):
            raise ValueError(f"{path}: every token needs a non-empty tenant")
        return cls(tokens)

    @property
    def enabled(self) -> bool:
        return self._tenants is not None

    def tenant(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        """The caller's tenant from its call metadata; raises Unauthenticated."""
        if self._tenants is None:
            return ANONYMOUS
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        if not token:
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        tenant = self._tenants.get(_digest(token))
        if tenant is None:
            raise Unauthenticated("unknown bearer token")
        return tenant

    def is_mesh(self, tenant: str) -> bool:
        """The caller is one of the mesh's own components (see MESH_TENANT)."""
        return self.enabled and tenant == MESH_TENANT

    def reads_everything(self, tenant: str) -> bool:
        """Open mode's single user and the mesh itself see every tenant's objects."""
        return not self.enabled or self.is_mesh(tenant)

    def is_public(self, method: str) -> bool:
        return method.startswith(PUBLIC_METHOD_PREFIXES)

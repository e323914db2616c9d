"""What every command needs to reach the mesh, from the common options."""

from __future__ import annotations

from mlaas.tls import ClientTLS


def tls_of(args) -> ClientTLS | None:
    """The client TLS of --tls-ca, --tls-cert and --tls-key (None: plaintext)."""
    return ClientTLS.from_files(args.tls_ca, args.tls_cert, args.tls_key)

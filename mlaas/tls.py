"""TLS for every connection of the mesh: what a server serves and what a client trusts and presents.

Servers: `MLAAS_TLS_CERT` and `MLAAS_TLS_KEY` (PEM files) turn TLS on; `MLAAS_TLS_CLIENT_CA` makes
client certificates signed by that CA mandatory (mTLS). The files are read again when they
change (a renewed certificate, a Kubernetes Secret updated in place): each new connection gets
the current pair, established ones keep theirs.

Clients: `MLAAS_TLS_CA` (the CA that signed the servers' certificates) turns TLS on; with
`MLAAS_TLS_CLIENT_CERT` and `MLAAS_TLS_CLIENT_KEY` the client presents that certificate.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

SERVER_ENV = ("MLAAS_TLS_CERT", "MLAAS_TLS_KEY", "MLAAS_TLS_CLIENT_CA")
CLIENT_ENV = ("MLAAS_TLS_CA", "MLAAS_TLS_CLIENT_CERT", "MLAAS_TLS_CLIENT_KEY")
ALL_ENV = SERVER_ENV + CLIENT_ENV


def _readable_pem(name: str, path: str) -> str:
    """`path` if it is a readable PEM file; a ValueError naming the variable otherwise."""
    try:
        head = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{name}={path}: cannot read it ({err.strerror})") from None
    if b"-----BEGIN " not in head:
        raise ValueError(f"{name}={path}: not a PEM file")
    return path


def _pair(env: Mapping[str, str], cert_name: str, key_name: str) -> tuple[str | None, str | None]:
    cert, key = env.get(cert_name) or None, env.get(key_name) or None
    if (cert is None) != (key is None):
        given, missing = (cert_name, key_name) if cert else (key_name, cert_name)
        raise ValueError(f"{given} is set but {missing} is not: a certificate needs its private key")
    if cert and key:
        _readable_pem(cert_name, cert)
        _readable_pem(key_name, key)
    return cert, key


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate and key, and the CA its clients' certificates must chain to (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerTLS | None:
        cert, key = _pair(env, "MLAAS_TLS_CERT", "MLAAS_TLS_KEY")
        client_ca = env.get("MLAAS_TLS_CLIENT_CA") or None
        if cert is None or key is None:
            if client_ca:
                raise ValueError("MLAAS_TLS_CLIENT_CA needs MLAAS_TLS_CERT and MLAAS_TLS_KEY: mTLS is TLS first")
            return None
        if client_ca:
            _readable_pem("MLAAS_TLS_CLIENT_CA", client_ca)
        tls = cls(cert, key, client_ca)
        tls.load()  # a key that does not match its certificate fails at start, not at the first call
        return tls

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The files as they are now; ValueError when the key does not belong to the certificate
        (as while one of them is being replaced)."""
        cert, key = Path(self.cert_file).read_bytes(), Path(self.key_file).read_bytes()
        _check_pair(self.cert_file, cert, key)
        client_ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that pick up new files for new connections (see `Reloader`)."""
        reloader = Reloader(self)
        return grpc.dynamic_ssl_server_credentials(
            reloader.initial, reloader.fetch, require_client_authentication=self.mutual
        )


def _check_pair(cert_file: str, cert: bytes, key: bytes) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{cert_file}: cannot load the certificate or its key ({err})") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*spki) != private_key.public_key().public_bytes(*spki):
        raise ValueError(f"{cert_file}: the private key does not belong to this certificate")


def _stamp(path: str) -> tuple[int, int, int]:
    """What changes when a file is rewritten or replaced (a Secret volume swaps a symlink)."""
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size, status.st_ino


class Reloader:
    """The certificate fetcher of `grpc.dynamic_ssl_server_credentials`: gRPC calls it at each
    new TLS handshake; it answers a new configuration when a file changed since the last load
    (else None: keep the current one). A half-replaced pair (new certificate, old key) is not
    taken: the current one stays until both files agree."""

    def __init__(self, tls: ServerTLS):
        self._tls = tls
        self._lock = threading.Lock()
        self._stamps = self._read_stamps()
        self.initial = tls.load()

    def _read_stamps(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(_stamp(f) for f in self._tls.files())

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            with self._lock:
                stamps = self._read_stamps()
                if stamps == self._stamps:
                    return None
                configuration = self._tls.load()
                if self._read_stamps() != stamps:  # changed while being read: take it next time
                    return None
                self._stamps = stamps
            log.info("TLS: loaded the changed certificate files %s", ", ".join(self._tls.files()))
            return configuration
        except (OSError, ValueError) as err:
            log.warning("TLS: keeping the current certificate: %s", err)
            return None


@dataclass(frozen=True)
class ClientTLS:
    """The CA a client trusts, and the certificate it presents (for servers that require one)."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientTLS | None:
        return cls.from_files(
            env.get("MLAAS_TLS_CA") or None, env.get("MLAAS_TLS_CLIENT_CERT") or None,
            env.get("MLAAS_TLS_CLIENT_KEY") or None,
        )  # fmt: skip

    @classmethod
    def from_files(cls, ca: str | None, cert: str | None = None, key: str | None = None) -> ClientTLS | None:
        """None (plaintext) without a CA; ValueError for a certificate without its key or the reverse."""
        cert, key = _pair({"MLAAS_TLS_CLIENT_CERT": cert or "", "MLAAS_TLS_CLIENT_KEY": key or ""},
                          "MLAAS_TLS_CLIENT_CERT", "MLAAS_TLS_CLIENT_KEY")  # fmt: skip
        if ca is None:
            if cert:
                raise ValueError("MLAAS_TLS_CLIENT_CERT needs MLAAS_TLS_CA: the CA the servers' certificates chain to")
            return None
        return cls(_readable_pem("MLAAS_TLS_CA", ca), cert, key)

    def credentials(self) -> grpc.ChannelCredentials:
        """Read at each call, so that a channel opened after a renewal presents the new certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes(),
            private_key=Path(self.key_file).read_bytes() if self.key_file else None,
            certificate_chain=Path(self.cert_file).read_bytes() if self.cert_file else None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same trust and certificate for an HTTPS client."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def env(self) -> dict[str, str]:
        """The MLAAS_TLS_* client variables that make a child process a client like this one."""
        variables = {"MLAAS_TLS_CA": self.ca_file}
        if self.cert_file and self.key_file:
            variables |= {"MLAAS_TLS_CLIENT_CERT": self.cert_file, "MLAAS_TLS_CLIENT_KEY": self.key_file}
        return variables


def client_tls(tls: ClientTLS | None = None) -> ClientTLS | None:
    """`tls`, else what this process's environment says (components inherit the mesh's
    MLAAS_TLS_* variables from whoever started them), else None: plaintext."""
    return tls if tls is not None else ClientTLS.from_env(os.environ)


def _tls_options(target: str, options: Sequence[tuple[str, object]]) -> list[tuple[str, object]]:
    """A multi-endpoint `ipv4:a:p,b:q` target has no host name of its own to check the servers'
    certificates against: check the first endpoint's (replicas of one mesh share a certificate)."""
    if target.startswith("ipv4:"):
        first = target.removeprefix("ipv4:").split(",")[0].rsplit(":", 1)[0]
        return [*options, ("grpc.ssl_target_name_override", first)]
    return list(options)


def channel(target: str, options: Sequence[tuple[str, object]] = (), tls: ClientTLS | None = None) -> grpc.Channel:
    """A channel to `target`: TLS with `tls` (or the environment's), plaintext without."""
    tls = client_tls(tls)
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, tls.credentials(), options=_tls_options(target, options))


def aio_channel(
    target: str, options: Sequence[tuple[str, object]] = (), tls: ClientTLS | None = None
) -> grpc.aio.Channel:
    """The asyncio twin of `channel`."""
    tls = client_tls(tls)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(target, tls.credentials(), options=_tls_options(target, options))

"""A local certificate authority and the certificates the mesh needs, made with `cryptography`.

`mlaas up --tls` keeps them in `<data dir>/tls/`; `python -m mlaas.local.certs init DIR` makes the same
set anywhere (for Docker or a hand-run mesh); `python -m mlaas.local.certs k8s-secret` makes the
Kubernetes Secret the dev overlay mounts (run by its Job). Keys are EC P-256, written 0600.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlaas.services.private_files import private_dir, write_private

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 365
# A leaf this close to its end is issued again (with the same CA) by `local_pki`.
RENEW_BEFORE = datetime.timedelta(days=30)
# The CA keys issue() signs with (SHA-256): the EC ones make_ca makes, or RSA and DSA ones put in their place.
_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey


CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_ca(
    common_name: str = "mlaas local CA", days: int = CA_DAYS
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate,
    ca_key: _SigningKey,
    common_name: str,
    names: Sequence[str] = (),
    server: bool = True,
    client: bool = False,
    days: int = LEAF_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by the CA: for servers (`names`: DNS names and IP addresses,
    wildcards allowed), for clients, or both."""
    key = _key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(min(_now() + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_public(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod(0o644)
    partial.replace(path)


@dataclass(frozen=True)
class LocalPKI:
    """The files of a local mesh's TLS: its CA, one server certificate for every component, and
    one client certificate every component (and the local user) presents."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    def env(self, mutual: bool = True) -> dict[str, str]:
        """The MLAAS_TLS_* variables of a component: it serves the server certificate, requires
        client certificates of this CA (if `mutual`), trusts this CA and presents the client one."""
        variables = {
            "MLAAS_TLS_CERT": str(self.server_cert),
            "MLAAS_TLS_KEY": str(self.server_key),
            "MLAAS_TLS_CA": str(self.ca_cert),
            "MLAAS_TLS_CLIENT_CERT": str(self.client_cert),
            "MLAAS_TLS_CLIENT_KEY": str(self.client_key),
        }
        if mutual:
            variables["MLAAS_TLS_CLIENT_CA"] = str(self.ca_cert)
        return variables


def _usable(path: Path, names: Sequence[str] = ()) -> x509.Certificate | None:
    """The certificate at `path` unless it is missing, near its end, or lacks one of `names`."""
    if not path.exists():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc - RENEW_BEFORE <= _now():
        return None
    if names:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        if not set(_san(names)) <= set(san):
            return None
    return cert


def local_pki(directory: Path, names: Sequence[str] = LOCAL_NAMES) -> LocalPKI:
    """Creates what is missing in `directory` (0700): the CA, then the server and client
    certificates it signs. Existing files are reused; a leaf near its end is issued again."""
    pki = LocalPKI(directory)
    private_dir(directory)
    ca_cert = _usable(pki.ca_cert) if pki.ca_key.exists() else None
    ca_key: _SigningKey
    if ca_cert is None:
        ca_cert, ca_key = make_ca()
        write_private(pki.ca_key, _key_pem(ca_key))
        write_public(pki.ca_cert, _cert_pem(ca_cert))
        pki.server_cert.unlink(missing_ok=True)  # signed by the CA just replaced
        pki.client_cert.unlink(missing_ok=True)
    else:
        loaded = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        if not isinstance(loaded, _SigningKey):
            raise ValueError(f"{pki.ca_key}: a {type(loaded).__name__} cannot sign certificates with SHA-256")
        ca_key = loaded
    for cert_path, key_path, name, server, client in (
        (pki.server_cert, pki.server_key, "mlaas server", True, False),
        (pki.client_cert, pki.client_key, "mlaas client", False, True),
    ):
        if key_path.exists() and _usable(cert_path, names if server else ()) is not None:
            continue
        cert, key = issue(ca_cert, ca_key, name, names if server else (), server=server, client=client)
        write_private(key_path, _key_pem(key))
        write_public(cert_path, _cert_pem(cert))
    return pki


def mesh_names(namespace: str, domain: str = "cluster.local") -> list[str]:
    """Every name a component of the mesh is reached by in a Kubernetes namespace: the three
    services, the runtimes' per-replica Services (`mlaas-...<ns>.svc`) and loopback (probes)."""
    names = []
    for service in ("mlaas-registry", "mlaas-scheduler", "mlaas-monitor"):
        names += [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
        names.append(f"{service}.{namespace}.svc.{domain}")
    return [*names, f"*.{namespace}.svc", f"*.{namespace}.svc.{domain}", *LOCAL_NAMES]


def k8s_secret_data(namespace: str) -> dict[str, bytes]:
    """`ca.crt`, `tls.crt` and `tls.key` as cert-manager lays them out: one certificate for
    serving and for presenting as a client, signed by a CA whose key is thrown away."""
    ca_cert, ca_key = make_ca(f"mlaas {namespace} CA")
    cert, key = issue(ca_cert, ca_key, f"mlaas.{namespace}", mesh_names(namespace), server=True, client=True)
    return {"ca.crt": _cert_pem(ca_cert), "tls.crt": _cert_pem(cert), "tls.key": _key_pem(key)}


def create_k8s_secret(name: str, namespace: str) -> bool:
    """Creates the Secret in-cluster unless it exists; True when it was created."""
    import base64

    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    config.load_incluster_config()
    data: dict[str, bytes | str] = {k: base64.b64encode(v).decode() for k, v in k8s_secret_data(namespace).items()}
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "mlaas"}),
        type="kubernetes.io/tls",
        data=data,
    )
    try:
        client.CoreV1Api().create_namespaced_secret(namespace, secret)
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlaas.local.certs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="a CA, a server and a client certificate in DIR (reused if there)")
    init.add_argument("directory")
    init.add_argument("--name", action="append", default=[], help="another DNS name or IP of the server certificate")
    secret = commands.add_parser("k8s-secret", help="create the mesh's TLS Secret in-cluster unless it exists")
    secret.add_argument("--name", default="mlaas-tls")
    secret.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "mlaas"))
    args = parser.parse_args(argv)
    if args.command == "init":
        pki = local_pki(Path(args.directory), [*LOCAL_NAMES, *args.name])
        for variable, value in pki.env().items():
            print(f"{variable}={value}")
        return 0
    created = create_k8s_secret(args.name, args.namespace)
    print(f"secret {args.namespace}/{args.name} {'created' if created else 'exists already: kept'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

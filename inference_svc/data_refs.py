"""Input tensors by reference: a `data_uri` parameter instead of contents.

    file:///data/batch.npy            only under the configured roots (no path traversal)
    s3://bucket/key.npz#features      only from the configured buckets
    https://host/rows.csv             only to the configured hosts, at public addresses unless
                                      private ones are allowed; redirects are not followed

Formats: .npy, .npz (the array named after '#', or the only one), numeric .csv. Every
reference is size-limited; every refusal says why and what to configure.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import math
import socket
import ssl
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from inference_svc.settings import DataRefPolicy
from mlaas.errors import InvalidArgument, PermissionDenied, ResourceExhausted


def _too_big(uri: str, size: int, limit: int) -> ResourceExhausted:
    return ResourceExhausted(f"data_uri {uri}: {size} bytes exceeds the limit of {limit} bytes")


def _read_file(uri: str, path_text: str, policy: DataRefPolicy) -> bytes:
    if not policy.roots_resolved:
        raise PermissionDenied("file:// data references are disabled; set MLAAS_DATA_URI_ROOTS to allow directories")
    path = Path(path_text).resolve()
    if not any(path.is_relative_to(root) for root in policy.roots_resolved):
        raise PermissionDenied(f"data_uri {uri} is outside the allowed roots")
    if not path.is_file():
        raise InvalidArgument(f"data_uri {uri}: no such file")
    size = path.stat().st_size
    if size > policy.max_bytes:
        raise _too_big(uri, size, policy.max_bytes)
    return path.read_bytes()


def _checked_address(uri: str, host: str, port: int, policy: DataRefPolicy) -> str:
    """An address of `host` that may be fetched from: every address it resolves to must be public
    unless private ones are allowed, so that an allowed name cannot point into the mesh's own
    network (the connection then goes to the address checked here, not to a second lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise InvalidArgument(f"data_uri {uri}: cannot resolve {host!r}: {err}") from None
    # An IP family's socket address starts with the host (typeshed allows others' too).
    addresses = [info[4][0] for info in infos if isinstance(info[4][0], str)]
    if not addresses:
        raise InvalidArgument(f"data_uri {uri}: {host!r} resolves to no IP address")
    if not policy.allow_private_addresses:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global:
                raise PermissionDenied(
                    f"data_uri {uri}: {host!r} resolves to the non-public address {ip}; "
                    "set MLAAS_DATA_URI_ALLOW_PRIVATE=true to allow private networks"
                )
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address checked beforehand, verifying the certificate for the host name."""

    def __init__(self, host: str, port: int, address: str, *, context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _read_https(uri: str, policy: DataRefPolicy) -> bytes:
    parsed = urlparse(uri)
    host, port = parsed.hostname or "", parsed.port or 443
    if host not in policy.https_hosts:
        raise PermissionDenied(f"data_uri {uri}: host {host!r} is not allowed (MLAAS_DATA_URI_HOSTS)")
    address = _checked_address(uri, host, port, policy)
    context = ssl.create_default_context(cafile=policy.ca_file) if policy.ca_file else ssl.create_default_context()
    connection = _PinnedHTTPSConnection(host, port, address, timeout=policy.timeout_seconds, context=context)
    try:
        connection.request("GET", parsed.path + (f"?{parsed.query}" if parsed.query else ""))
        response = connection.getresponse()
        if 300 <= response.status < 400:  # each hop would need the checks again: not followed
            raise PermissionDenied(f"data_uri {uri}: the server answered {response.status}; redirects are not followed")
        if response.status != 200:
            raise InvalidArgument(f"data_uri {uri}: cannot fetch: HTTP {response.status} {response.reason}")
        length = int(response.headers.get("Content-Length") or 0)
        if length > policy.max_bytes:
            raise _too_big(uri, length, policy.max_bytes)
        data = response.read(policy.max_bytes + 1)
    except (OSError, http.client.HTTPException) as err:
        raise InvalidArgument(f"data_uri {uri}: cannot fetch: {err}") from None
    finally:
        connection.close()
    if len(data) > policy.max_bytes:
        raise _too_big(uri, len(data), policy.max_bytes)
    return data


def _read_s3(uri: str, bucket: str, key: str, policy: DataRefPolicy) -> bytes:
    if bucket not in policy.s3_buckets:
        raise PermissionDenied(f"data_uri {uri}: bucket {bucket!r} is not allowed (MLAAS_DATA_URI_BUCKETS)")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        obj = boto3.client("s3", endpoint_url=policy.s3_endpoint_url).get_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as err:
        raise InvalidArgument(f"data_uri {uri}: cannot fetch: {err}") from None
    if obj["ContentLength"] > policy.max_bytes:
        obj["Body"].close()
        raise _too_big(uri, obj["ContentLength"], policy.max_bytes)
    return obj["Body"].read()


def _read_npy(uri: str, stream, max_bytes: int) -> np.ndarray:
    """An .npy array whose declared size (its header's shape and dtype) is checked before any of
    it is allocated or inflated: a small compressed file can declare gigabytes."""
    major, _ = np.lib.format.read_magic(stream)
    headers = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}
    if major not in headers:
        raise InvalidArgument(f"data_uri {uri}: .npy format version {major} is not supported (use 1 or 2)")
    shape, _, dtype = headers[major](stream)
    declared = math.prod(shape) * dtype.itemsize
    if declared > max_bytes:
        raise _too_big(f"{uri} (as declared)", declared, max_bytes)
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _parse(uri: str, data: bytes, path: str, key: str, max_bytes: int) -> np.ndarray:
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".npy":
            return _read_npy(uri, io.BytesIO(data), max_bytes)
        if suffix == ".npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                names = list(archive.keys())
                if not key and len(names) == 1:
                    key = names[0]
                if key not in names:
                    raise InvalidArgument(f"data_uri {uri}: name the array after '#', one of {names}")
                with archive.zip.open(f"{key}.npy") as member:
                    return _read_npy(uri, member, max_bytes)
        if suffix == ".csv":
            return np.loadtxt(io.StringIO(data.decode()), delimiter=",", ndmin=2)
    except (InvalidArgument, ResourceExhausted):
        raise
    except Exception as err:
        raise InvalidArgument(f"data_uri {uri}: cannot parse as {suffix}: {err}") from None
    raise InvalidArgument(f"data_uri {uri}: unsupported format {suffix or '(none)'}; use .npy, .npz or .csv")


def load(uri: str, policy: DataRefPolicy) -> np.ndarray:
    """Fetches and parses a reference (blocking: call it off the event loop)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        data = _read_file(uri, parsed.path, policy)
    elif parsed.scheme == "https":
        data = _read_https(uri.split("#", 1)[0], policy)
    elif parsed.scheme == "s3":
        data = _read_s3(uri, parsed.netloc, parsed.path.lstrip("/"), policy)
    else:
        raise InvalidArgument(f"data_uri {uri!r}: scheme must be file://, s3:// or https://")
    return _parse(uri, data, parsed.path, parsed.fragment, policy.max_bytes)

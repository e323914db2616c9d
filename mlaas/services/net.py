"""Small networking helpers: free ports and waiting for a gRPC server to be healthy (over TLS
when `tls` or the environment's MLAAS_TLS_CA says so, as every mesh client)."""

from __future__ import annotations

import random
import socket
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlaas.tls import ClientTLS, channel


def _ephemeral_low() -> int:
    """Where the kernel's range for bind(0) and outgoing connections starts."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the caller should bind it promptly), chosen at random
    below the kernel's ephemeral range. A port from that range (what bind(0) gives) may be handed
    to an outgoing connection, or to another process's bind(0), before the caller binds it: with
    several processes starting servers at once, a runtime failed to bind its control port so."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randint(max(1024, low - 20_000), low - 1)
        if port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded machine: the kernel's pick
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind `port` now (as gRPC does, with SO_REUSEADDR)."""
    if not port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_listening(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Returns once something accepts connections on `port` (a server that is not gRPC, such as
    a runtime's REST port); TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def _check(stub: health_pb2_grpc.HealthStub, service: str, timeout: float) -> str:
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as err:
        return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class HealthProbe:
    """Health checks that keep one channel per address between rounds (a loop checking
    thousands of replicas every second should not open a connection per check). Channels
    reconnect within a second after their server restarts; `keep_only` closes the others."""

    OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))

    def __init__(self, tls: ClientTLS | None = None):
        self._tls = tls
        self._stubs: dict[str, tuple[grpc.Channel, health_pb2_grpc.HealthStub]] = {}

    def check(self, address: str, timeout: float = 1.0) -> str:
        """As `health`: "SERVING", or why not."""
        if address not in self._stubs:
            opened = channel(address, self.OPTIONS, self._tls)
            self._stubs[address] = (opened, health_pb2_grpc.HealthStub(opened))
        return _check(self._stubs[address][1], "", timeout)

    def keep_only(self, addresses: set[str]) -> None:
        for address in set(self._stubs) - addresses:
            self._stubs.pop(address)[0].close()


def health(address: str, timeout: float = 1.0, service: str = "", tls: ClientTLS | None = None) -> str:
    """One gRPC health check: "SERVING", or why not (a serving status or a gRPC status code)."""
    with channel(address, tls=tls) as opened:
        return _check(health_pb2_grpc.HealthStub(opened), service, timeout)


# A server that is starting refuses connections until it binds: try again within 50-250 ms, not
# after gRPC's default second (a warm replica serves a quarter of a second after it starts).
STARTING_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 250))


def wait_healthy(address: str, timeout: float = 30.0, service: str = "", tls: ClientTLS | None = None) -> None:
    """Polls the gRPC health service until it reports SERVING; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with channel(address, STARTING_OPTIONS, tls) as opened:
        stub = health_pb2_grpc.HealthStub(opened)
        while time.monotonic() < deadline:
            last = _check(stub, service, 1.0)
            if last == "SERVING":
                return
            time.sleep(0.05)
    raise TimeoutError(f"{address} not healthy within {timeout:.0f}s (last: {last})")

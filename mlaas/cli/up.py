"""`mlaas up`: the whole mesh on one machine, on its embedded defaults."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlaas import addresses
from mlaas.cli.connect import tls_of
from mlaas.client import RegistryClient, SchedulerClient
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.local.supervisor import Child, Supervisor, child_env
from mlaas.services.auth import MONITOR, REGISTRY, SCHEDULER, add_mesh_identities
from mlaas.services.net import free_port, port_is_free, wait_healthy
from mlaas.services.private_files import private_by_default, private_dir
from mlaas.services.settings import data_dir
from mlaas.tls import ClientTLS

if TYPE_CHECKING:
    from mlaas.local.certs import LocalPKI


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt  # so that SIGTERM while starting stops what was started


def _in_use(ports: dict[str, int]) -> str | None:
    """Why the mesh cannot start on the ports asked for, or None (port 0 picks a free one)."""
    taken = [f"127.0.0.1:{port} ({name})" for name, port in ports.items() if port and not port_is_free(port)]
    return f"{', '.join(taken)} in use: is another mesh running? (0 picks a free port)" if taken else None


def _wait_serving(child: Child, address: str, tls) -> None:
    """Until the child we started answers health on `address`; fails at once if it exits (then
    whatever answers there is not ours)."""
    deadline = time.monotonic() + 60
    while child.process.poll() is None:
        try:
            wait_healthy(address, timeout=0.5, tls=tls)
            if child.process.poll() is None:
                return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not become healthy on {address}; see {child.log_path}") from None
    tail = child.log_path.read_text(errors="replace").strip().splitlines()[-3:]
    raise RuntimeError(f"{child.name} exited with {child.process.returncode} while starting: {' / '.join(tail)}")


@dataclass
class _Mesh:
    """What `mlaas up` starts: where each service listens, the environment every component gets,
    the roles' tokens (under auth) and how clients reach it (TLS)."""

    root: Path
    registry: str
    scheduler: str
    monitor: str
    activator: str  # "": none
    activator_http: str
    env: dict[str, str]
    roles: dict[str, str]
    tls: ClientTLS | None
    pki: LocalPKI | None  # the local CA and certificates of `mlaas up --tls`

    def as_role(self, role: str) -> dict[str, str]:
        """The environment of the component in `role`: its role's token under auth."""
        return {**self.env, "MLAAS_TOKEN": self.roles[role]} if self.roles else self.env


def _activator_port(args, asked: int | None, usual: int) -> int:
    """The port asked for (0: a free one); by default the usual one, or a free one beside a free
    scheduler port."""
    if asked is None:
        return free_port() if args.scheduler_port == 0 else usual
    return asked or free_port()


def _plan(args, root: Path, redis_url: str) -> _Mesh:
    """Ports, identities and certificates of the mesh about to start, and its environment."""
    registry_port, scheduler_port, monitor_port = (
        port or free_port() for port in (args.registry_port, args.scheduler_port, args.monitor_port)
    )
    activator_port = _activator_port(args, args.activator_port, addresses.ACTIVATOR_PORT)
    activator_http_port = _activator_port(args, args.activator_http_port, addresses.ACTIVATOR_HTTP_PORT)
    registry, scheduler, monitor = (f"127.0.0.1:{port}" for port in (registry_port, scheduler_port, monitor_port))
    identity, roles = {}, {}
    if os.environ.get("MLAAS_AUTH_TOKENS_FILE"):  # with auth: each component gets its role's token
        roles = add_mesh_identities(os.environ["MLAAS_AUTH_TOKENS_FILE"], root)
        identity = {
            "MLAAS_AUTH_TOKENS_FILE": str(root / "mesh-tokens.yaml"),
            "MLAAS_MESH_KEY_FILE": str(root / "mesh.key"),
        }
    tls_env, tls = {}, tls_of(args)
    pki: LocalPKI | None = None
    if args.tls:  # every component serves TLS, requires a client certificate, and presents one
        from mlaas.local.certs import local_pki

        pki = local_pki(root / "tls")
        tls_env = pki.env(mutual=True)
        tls = ClientTLS(str(pki.ca_cert), str(pki.client_cert), str(pki.client_key))
    env = child_env(
        os.environ,
        MLAAS_DATA_DIR=str(root),
        MLAAS_REDIS_URL=redis_url,
        MLAAS_REGISTRY_ADDR=registry,
        # The registry asks the scheduler before deleting a version that may be deployed.
        MLAAS_SCHEDULER_ADDR=scheduler,
        MLAAS_REGISTRY_PORT=str(registry_port),
        MLAAS_REGISTRY_METRICS_PORT=str(args.registry_metrics_port),
        MLAAS_SCHEDULER_PORT=str(scheduler_port),
        MLAAS_SCHEDULER_METRICS_PORT=str(args.scheduler_metrics_port),
        MLAAS_ACTIVATOR_PORT=str(activator_port),
        MLAAS_ACTIVATOR_HTTP_PORT=str(activator_http_port),
        MLAAS_MONITOR_PORT=str(monitor_port),
        MLAAS_MONITOR_METRICS_PORT=str(args.monitor_metrics_port),
        # Runtimes send their inference records here (the scheduler passes it on to them).
        MLAAS_MONITOR_ADDR=monitor,
        # The runtimes are this command's children too: Ctrl-C takes them down with the rest.
        MLAAS_STOP_REPLICAS_ON_EXIT="true",
        **identity,
        **tls_env,
    )
    activator, activator_http = (f"127.0.0.1:{p}" if p > 0 else "" for p in (activator_port, activator_http_port))
    return _Mesh(root, registry, scheduler, monitor, activator, activator_http, env, roles, tls, pki)


def _endpoints(args, mesh: _Mesh, redis: EmbeddedRedis, supervisor: Supervisor) -> dict[str, str]:
    endpoints = {
        "registry": mesh.registry,
        "scheduler": mesh.scheduler,
        "monitor": mesh.monitor,
        "activator": mesh.activator,
        "activator_http": mesh.activator_http,
        "registry_metrics": f"http://127.0.0.1:{args.registry_metrics_port}/metrics",
        "scheduler_metrics": f"http://127.0.0.1:{args.scheduler_metrics_port}/metrics",
        "monitor_metrics": f"http://127.0.0.1:{args.monitor_metrics_port}/metrics",
        "redis": redis.display_url,
        "data_dir": str(mesh.root),
        "logs": str(supervisor.log_dir),
    }
    if (pki := mesh.pki) is not None:
        endpoints |= {"tls_ca": str(pki.ca_cert), "tls_cert": str(pki.client_cert), "tls_key": str(pki.client_key)}
    return endpoints


def _demo(args, mesh: _Mesh, say: Callable[[str], None]) -> dict[str, str]:
    """The demo models registered and iris-logreg deployed; where the deployment answers."""
    say("registering demo models:")
    with RegistryClient(mesh.registry, args.token, tls=mesh.tls) as client:
        from mlaas.demos.demo import register_demo_models

        register_demo_models(client, log=say)
    say("deploying iris-logreg:")
    with SchedulerClient(mesh.scheduler, args.token, tls=mesh.tls) as scheduler:
        deployment = scheduler.deploy("iris-logreg")
        deployment = scheduler.wait_ready(deployment.id, lambda e: say(f"  {e.detail}"))
    found = {"demo_deployment": deployment.id, "demo_endpoint": deployment.endpoints[0]}
    if deployment.http_endpoints:  # the same replica over REST
        found["demo_rest_endpoint"] = deployment.http_endpoints[0]
    return found


def _welcome(args, mesh: _Mesh, endpoints: dict[str, str]) -> None:
    """What is up, and what to try next."""
    print("\nMLaaS mesh is up:")
    for key, value in endpoints.items():
        print(f"  {key:17} {value}")
    pki, flags = mesh.pki, ""
    if pki is not None:
        flags = f" --tls-ca {pki.ca_cert} --tls-cert {pki.client_cert} --tls-key {pki.client_key}"
    print(f"\ntry: mlaas model find --task classification --max-memory 512Mi --registry {mesh.registry}{flags}")
    if "demo_deployment" in endpoints:
        print(f"     mlaas infer {endpoints['demo_deployment']} --input rows.json --scheduler {mesh.scheduler}{flags}")
    if pki is not None:
        print(f"     (or export MLAAS_TLS_CA={pki.ca_cert} MLAAS_TLS_CLIENT_CERT={pki.client_cert} "
              f"MLAAS_TLS_CLIENT_KEY={pki.client_key})")  # fmt: skip
    print("Ctrl-C stops everything.", flush=True)


def run_up(args) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(args.data_dir).expanduser() if args.data_dir else data_dir(os.environ)
    private_by_default()  # every component inherits it: nothing in the data dir is for other users
    private_dir(root)
    say = (lambda *_: None) if args.json else print
    ports = {"registry": args.registry_port, "scheduler": args.scheduler_port, "monitor": args.monitor_port}
    activators = {
        "activator": (args.activator_port, addresses.ACTIVATOR_PORT),
        "activator (HTTP)": (args.activator_http_port, addresses.ACTIVATOR_HTTP_PORT),
    }
    # By default the usual port beside a fixed scheduler port, a free one beside a free one.
    fixed = {name: usual if port is None and args.scheduler_port else max(port or 0, 0)
             for name, (port, usual) in activators.items()}  # fmt: skip
    taken = _in_use(ports | fixed)
    if taken:
        print(f"error: {taken}", file=sys.stderr)
        return 1
    redis = EmbeddedRedis(root / "redis").start()
    supervisor = Supervisor(root / "logs")
    mesh = _plan(args, root, redis.url)
    try:
        for name, role, address in (
            ("registry", REGISTRY, mesh.registry),
            ("scheduler", SCHEDULER, mesh.scheduler),
            ("monitor", MONITOR, mesh.monitor),
        ):
            child = supervisor.spawn(name, [sys.executable, "-m", f"{name}_svc"], mesh.as_role(role))
            _wait_serving(child, address, mesh.tls)
        endpoints = _endpoints(args, mesh, redis, supervisor)
        if args.demo:
            endpoints |= _demo(args, mesh, say)
        if args.json:
            print(json.dumps(endpoints), flush=True)
        else:
            _welcome(args, mesh, endpoints)

        def revive_redis() -> str | None:
            if redis.alive():
                return None
            redis.start()  # on its port, from its append-only file
            return f"redis exited; restarted it on port {redis.port}"

        supervisor.supervise(lambda event: print(event, file=sys.stderr, flush=True), [revive_redis])
        return 0
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        say("stopping...")
        supervisor.stop_all()
        redis.stop()


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    up = commands.add_parser("up", parents=[common], help="run the mesh locally (embedded Redis, local runtimes)")
    up.add_argument("--data-dir", help="where state lives (env MLAAS_DATA_DIR; default ~/.mlaas)")
    up.add_argument("--demo", action="store_true", help="register the demo models")
    up.add_argument(
        "--tls",
        action="store_true",
        help="every connection over mTLS, with a local CA and certificates made in <data dir>/tls (reused)",
    )
    up.add_argument("--registry-port", type=int, default=addresses.REGISTRY_PORT, help="0 picks a free port")
    up.add_argument("--registry-metrics-port", type=int, default=9451)
    up.add_argument("--scheduler-port", type=int, default=addresses.SCHEDULER_PORT, help="0 picks a free port")
    up.add_argument("--scheduler-metrics-port", type=int, default=9452)
    up.add_argument("--monitor-port", type=int, default=addresses.MONITOR_PORT, help="0 picks a free port")
    up.add_argument("--monitor-metrics-port", type=int, default=9453)
    up.add_argument(
        "--activator-port", type=int,
        help=f"where plain gRPC clients reach any deployment (default {addresses.ACTIVATOR_PORT}, a free port with "
        "--scheduler-port 0; 0 picks a free port, -1: none)",
    )  # fmt: skip
    up.add_argument(
        "--activator-http-port", type=int,
        help=f"the same over HTTP, for curl (default {addresses.ACTIVATOR_HTTP_PORT}, as --activator-port otherwise)",
    )  # fmt: skip
    up.set_defaults(run=run_up)

"""What the loop tests share: the SEA classifier registered with its recipe and a Monitor and a
scheduler wired to each other (on real parts), and labels reported to a STRICT deployment's node."""

from __future__ import annotations

import numpy as np

from mlaas.client import RegistryClient
from mlaas.demos.scenarios import sea, sea_classifier
from mlaas.export import register_sklearn
from mlaas.services.net import free_port
from mlaas.services.settings import ServerSettings
from mlaas.v1 import monitor_pb2 as M
from mlaas.v1 import types_pb2

FINAL = (M.RETRAINING_STATE_ROLLED_OUT, M.RETRAINING_STATE_REJECTED, M.RETRAINING_STATE_FAILED)
ONE_CPU = types_pb2.Resources(cpu_millicores=1000, memory_bytes=256 * 2**20)
SEA_REFERENCE = sea(1_000, 0, np.random.default_rng(0))[0]
# A private fit runs a second Python (diffprivlib's environment) beside the job's.
TRAIN = types_pb2.Resources(cpu_millicores=1000, memory_bytes=1 << 30)


def monitor_and_scheduler(parts, start_monitor, **changes):
    """SEA (concept 0) in the registry, a Monitor, and a scheduler whose runtimes send to it
    (`changes`: to the scheduler's settings)."""
    with RegistryClient(parts.registry_address) as registry:
        register_sklearn(
            registry, sea_classifier(), "sea", SEA_REFERENCE, reference_data=SEA_REFERENCE, run_resources=ONE_CPU,
            train_resources=TRAIN,
        )  # fmt: skip
    monitor_server, scheduler = wired(parts, start_monitor, **changes)
    return monitor_server, f"127.0.0.1:{scheduler.server.port}"


def wired(parts, start_monitor, **changes):
    """(a Monitor, a scheduler) that know each other's address: the scheduler's runtimes send
    to the Monitor, the Monitor asks the scheduler (`changes`: to the scheduler's settings)."""
    monitor_port = free_port()
    scheduler = parts.start(env={"MLAAS_MONITOR_ADDR": f"127.0.0.1:{monitor_port}"}, warm_trainers=True, **changes)
    server = ServerSettings(port=monitor_port, metrics_port=-1, shutdown_grace_seconds=1)
    return start_monitor(parts.registry_address, f"127.0.0.1:{scheduler.server.port}", server=server), scheduler


def label_on_node(runtime, concept: int, prefix: str, n: int, rng) -> tuple[np.ndarray, list[str]]:
    """n SEA rows of `concept` streamed, and their labels reported to the replica on the node."""
    X, y = sea(n, concept, rng)
    batch = [f"{prefix}-{i}" for i in range(n)]
    assert all(r.error == "" for r in runtime.stream(({"X": X[i : i + 1]} for i in range(n)), batch))
    assert runtime.report_labels(zip(batch, map(str, y), strict=True)).accepted == n
    return X, batch


def ended_itself(retraining) -> bool:
    """Ended, and not because another site's round rolled the federation on first."""
    return retraining.state in FINAL and "another round rolled them on" not in retraining.reason

"""The Docker backend's warm job containers: per node, two containers of the uniform image (a
round's two jobs) started ahead of the node's next training jobs (`train-warm`:
mlaas/retraining/warm_trainer.py --one). Each imports and warms the job's libraries, says it is
ready, and waits for its job on its standard input.

A job placed on the node takes one: the container gets the job's CPU and memory limits (`docker
update`), is renamed after the job, and receives the job's arguments and environment (its
credential included) through an attach to its standard input, never through a file. It runs that
one job in that very process and exits with its code; the node's next warm container starts at
once. A job so keeps a cold job's isolation and limits (its own container, cgroup, mounts and
user) and begins where a cold one would be after seconds of imports. A node with no warm
container ready gets a cold job.

A warm container holds no credential and nothing of a tenant's until it is taken; it exits by
itself after an hour unused (its scheduler may be gone), and the backend removes the waiting ones
when it closes.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

log = logging.getLogger(__name__)
READY = b'{"ready": true}'
CPU_PERIOD = 100_000  # microseconds; a container's CPUs are its quota over this period
# A waiting container's limits, until a job takes it: room to import and warm the libraries.
WARM_CPU_MILLICORES = 1000
WARM_MEMORY_BYTES = 1 << 30
WARM_LABELS = {"mlaas.io/warm": "true"}
NAME_PREFIX = "mlaas-warm-"  # a waiting container's; a taken one gets its job's name
# A round runs two jobs one after the other (the challenger, then the final fit): both start warm.
PER_NODE = 2
IDLE_SECONDS = 3600.0  # a waiting container exits after this long (its scheduler may be gone)
IDLE_MARGIN_SECONDS = 120.0  # and one this close to it takes no job (the job would be lost)

# (node, the container's name) -> the started container, waiting for its job
StartWarm = Callable[[str, str], object]


class Container(Protocol):
    """What a caller reads of a job's docker container (the docker package has no types)."""

    @property
    def id(self) -> str: ...


def cpu_quota(millicores: int) -> int:
    return max(millicores, 10) * CPU_PERIOD // 1000


class WarmJobContainers:
    def __init__(self, start: StartWarm, per_node: int = PER_NODE):
        self._start = start
        self._per_node = per_node
        self._waiting: dict[str, list] = {}  # node -> its warm containers, oldest first
        self._starting: dict[str, int] = {}  # node -> containers being started for it now
        self._lock = threading.Lock()

    def ensure(self, node: str) -> None:
        """The node has its warm containers (those gone are replaced, the missing started)."""
        with self._lock:  # what is missing is claimed here: callers at once never start too many
            kept = self._waiting[node] = [c for c in self._waiting.get(node, []) if _running(c)]
            missing = max(0, self._per_node - len(kept) - self._starting.get(node, 0))
            self._starting[node] = self._starting.get(node, 0) + missing
        for _ in range(missing):
            started = None
            try:  # a name of its own: another mesh (or an earlier scheduler) may wait on the same engine
                started = self._start(node, f"{NAME_PREFIX}{node}-{secrets.token_hex(4)}")
            except Exception as err:  # the engine refused: jobs there start cold
                log.warning("no warm job container on node %s: %s", node, err)
            with self._lock:
                self._starting[node] -= 1
                if started is not None:
                    self._waiting.setdefault(node, []).append(started)

    def run(
        self, node: str, name: str, argv: Sequence[str], env: Mapping[str, str], cpu_millicores: int,
        memory_bytes: int,
    ) -> Container | None:  # fmt: skip
        """A warm container of the node, running the job now under `name` with its limits; None
        if none was ready (start the job cold). The node's next one starts either way."""
        with self._lock:
            waiting = self._waiting.get(node, [])
            container = next((c for c in waiting if _ready(c)), None)
            if container is not None:
                waiting.remove(container)
        try:
            if container is None:
                return None
            return _hand_over(container, name, argv, env, cpu_millicores, memory_bytes)
        finally:
            self.ensure(node)

    def close(self) -> None:
        """The waiting containers go (they hold nothing); running jobs stay."""
        with self._lock:
            waiting = [c for node in self._waiting.values() for c in node]
            self._waiting = {}
        for container in waiting:
            try:
                container.remove(force=True)
            except Exception as err:  # already gone, or the engine is
                log.debug("warm container not removed: %s", err)


def remove_waiting(engine, mesh: str) -> None:
    """Removes the mesh's warm containers that wait for a job on `engine` (those an earlier
    scheduler left when it was killed; a taken one runs its job under the job's name)."""
    labels = [f"mlaas.io/mesh={mesh}", *(f"{k}={v}" for k, v in WARM_LABELS.items())]
    for container in engine.containers.list(all=True, filters={"label": labels}):
        if container.name.startswith(NAME_PREFIX):
            try:
                container.remove(force=True)
            except Exception as err:  # gone meanwhile
                log.debug("warm container not removed: %s", err)


def _running(container) -> bool:
    try:
        container.reload()
    except Exception:
        return False
    return container.status in ("created", "running")


def _ready(container) -> bool:
    """Running, done warming up, and far from its idle exit (a job handed over as it exits is lost)."""
    if not _running(container):
        return False
    started = datetime.strptime(container.attrs["State"]["StartedAt"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    if (datetime.now(UTC) - started).total_seconds() > IDLE_SECONDS - IDLE_MARGIN_SECONDS:
        return False
    return READY in container.logs(stdout=True, stderr=False, tail=5)


def _hand_over(
    container, name: str, argv: Sequence[str], env: Mapping[str, str], cpu_millicores: int, memory_bytes: int
) -> Container | None:
    """The job's limits, name and request to a ready container; None (and the container goes)
    if the engine refused any of it."""
    request = {"argv": list(argv), "env": dict(env), "threads": max(1, cpu_millicores // 1000)}
    try:
        container.update(cpu_quota=cpu_quota(cpu_millicores), mem_limit=memory_bytes, memswap_limit=memory_bytes)
        container.rename(name)
        stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
        try:
            stdin._sock.sendall(json.dumps(request).encode() + b"\n")  # the raw socket: no HTTP framing
        finally:
            stdin.close()
    except Exception as err:
        log.warning("warm container %s could not take job %s (%s); it starts cold", container.name, name, err)
        try:
            container.remove(force=True)
        except Exception as gone:
            log.debug("warm container not removed: %s", gone)
        return None
    return container

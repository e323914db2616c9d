"""Where replicas go: a pure function of the request and the nodes' free resources.

OPEN places each replica on the node that fits it most tightly (the smallest largest leftover
share of CPU, memory and GPUs after placing it: best fit on the dominant resource), preferring
nodes that hold fewer replicas of the same request, so replicas spread before they stack.
STRICT places every replica on the one named node or nowhere, with the reason it cannot.

`choose` is the vectorised core (numpy over all nodes, no per-node Python loop); `place` is the
same over named nodes, for the scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlaas.quantities import format_cpu, format_memory

RESOURCES = ("cpu_millicores", "memory_bytes", "gpus")


@dataclass(frozen=True)
class Node:
    name: str
    allocatable: tuple[int, int, int]  # cpu millicores, memory bytes, gpus
    allocated: tuple[int, int, int] = (0, 0, 0)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    nodes: tuple[str, ...]  # one per replica; empty when it cannot be placed
    reason: str = ""

    @property
    def placed(self) -> bool:
        return bool(self.nodes)


def choose(free: np.ndarray, allocatable: np.ndarray, need: np.ndarray, replicas: int) -> np.ndarray | None:
    """Node indices for `replicas` copies of `need` ([cpu, memory, gpus]), or None if they do
    not all fit. `free` and `allocatable` are (nodes, 3) arrays; `free` is not modified."""
    free = free.astype(np.float64, copy=True)
    scale = np.where(allocatable > 0, allocatable, 1).astype(np.float64)
    stacked = np.zeros(len(free), dtype=np.int64)
    chosen = np.empty(replicas, dtype=np.int64)
    for replica in range(replicas):  # replicas are few; the nodes are vectorised
        left = free - need
        fits = (left >= 0).all(axis=1)
        if not fits.any():
            return None
        tightness = np.where(fits, (left / scale).max(axis=1), np.inf)
        # Spread first (fewest replicas of this request), then the tightest fit.
        score = np.where(fits, stacked * 4.0 + tightness, np.inf)
        best = int(np.argmin(score))
        chosen[replica] = best
        free[best] -= need
        stacked[best] += 1
    return chosen


def first_fit(free: np.ndarray, need: np.ndarray) -> int | None:
    """The baseline the simulation compares against: the first node with room."""
    fits = np.flatnonzero((free >= need).all(axis=1))
    return int(fits[0]) if len(fits) else None


def _describe(values) -> str:
    cpu, memory, gpus = (int(v) for v in values)
    return f"cpu {format_cpu(cpu)}, memory {format_memory(memory)}, gpus {gpus}"


def place(need: Sequence[int], replicas: int, nodes: Sequence[Node], strict_node: str | None = None) -> Placement:
    """OPEN when strict_node is None, else STRICT on that node."""
    if replicas < 1:
        return Placement((), "replicas must be at least 1")
    need_array = np.asarray(need, dtype=np.float64)
    if strict_node is not None:
        node = next((n for n in nodes if n.name == strict_node), None)
        if node is None:
            return Placement((), f"node {strict_node!r} does not exist")
        free = np.asarray(node.allocatable, dtype=np.float64) - np.asarray(node.allocated)
        if ((free - need_array * replicas) >= 0).all():
            return Placement((node.name,) * replicas)
        wanted = _describe(need_array * replicas)
        return Placement((), f"node {node.name!r} has {_describe(free)} free; {replicas} replica(s) need {wanted}")
    if not nodes:
        return Placement((), "no nodes are configured")
    allocatable = np.array([n.allocatable for n in nodes], dtype=np.float64)
    free = allocatable - np.array([n.allocated for n in nodes], dtype=np.float64)
    chosen = choose(free, allocatable, need_array, replicas)
    if chosen is None:
        most = free.max(axis=0)
        return Placement(
            (), f"no node fits {replicas} replica(s) of {_describe(need_array)} (largest free: {_describe(most)})"
        )
    return Placement(tuple(nodes[i].name for i in chosen))

"""Placement simulation: 1,000 nodes, 100,000 deployment requests of mixed sizes arriving and
departing; this scheduler's placement (best fit on the dominant resource, replicas spread)
beside plain first fit, on the same request stream in the same run.

    .venv/bin/python bench/placement_sim.py [--nodes 1000] [--requests 100000] [--seed 0]

Reports placements per second (decision time only), the share of requests placed, and the
mean CPU and memory utilisation of the cluster while it is loaded.
"""

from __future__ import annotations

import argparse
import heapq
import time

import numpy as np

from scheduler_svc.placement import choose, first_fit

GI, MI = 2**30, 2**20
NODE_SHAPES = np.array([[4000, 16 * GI, 0], [8000, 32 * GI, 0], [16000, 64 * GI, 0], [8000, 64 * GI, 1]], float)
REQUEST_SHAPES = np.array(
    [[250, 256 * MI, 0], [500, 1 * GI, 0], [1000, 2 * GI, 0], [4000, 8 * GI, 0], [500, 8 * GI, 0], [2000, 4 * GI, 1]],
    float,
)
REQUEST_MIX = np.array([0.35, 0.25, 0.2, 0.08, 0.1, 0.02])


def workload(requests: int, seed: int, mean_lifetime: float):
    rng = np.random.default_rng(seed)
    shapes = rng.choice(len(REQUEST_SHAPES), size=requests, p=REQUEST_MIX)
    replicas = rng.choice([1, 2, 3], size=requests, p=[0.7, 0.2, 0.1])
    lifetimes = rng.exponential(mean_lifetime, size=requests)
    return shapes, replicas, lifetimes


def simulate(strategy: str, allocatable: np.ndarray, shapes, replicas, lifetimes) -> dict:
    free = allocatable.copy()
    departures: list[tuple[float, int, tuple[int, ...]]] = []
    placed = 0
    decision_seconds = 0.0
    utilisation = []
    for i, (shape, count, life) in enumerate(zip(shapes, replicas, lifetimes, strict=True)):
        while departures and departures[0][0] <= i:
            _, s, nodes = heapq.heappop(departures)
            for n in nodes:
                free[n] += REQUEST_SHAPES[s]
        need = REQUEST_SHAPES[shape]
        started = time.perf_counter()
        if strategy == "best-fit-spread":
            chosen = choose(free, allocatable, need, int(count))
            nodes = tuple(int(n) for n in chosen) if chosen is not None else None
        else:
            nodes, trial = [], free.copy()
            for _ in range(count):
                n = first_fit(trial, need)
                if n is None:
                    nodes = None
                    break
                trial[n] -= need
                nodes.append(n)
            nodes = tuple(nodes) if nodes is not None else None
        decision_seconds += time.perf_counter() - started
        if nodes is not None:
            placed += 1
            for n in nodes:
                free[n] -= need
            heapq.heappush(departures, (i + life, int(shape), nodes))
        if i % 1000 == 999 and i > len(shapes) // 5:  # after warm-up
            used = 1 - free[:, :2].sum(axis=0) / allocatable[:, :2].sum(axis=0)
            utilisation.append(used)
    cpu, memory = np.mean(utilisation, axis=0)
    return {
        "placements_per_s": len(shapes) / decision_seconds,
        "placed_share": placed / len(shapes),
        "cpu_utilisation": cpu,
        "memory_utilisation": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-lifetime", type=float, default=9000.0, help="in arrivals; sets the offered load")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed + 1)
    allocatable = NODE_SHAPES[rng.choice(len(NODE_SHAPES), size=args.nodes, p=[0.4, 0.35, 0.15, 0.1])]
    stream = workload(args.requests, args.seed, args.mean_lifetime)
    results = {name: simulate(name, allocatable, *stream) for name in ("best-fit-spread", "first-fit")}
    print(f"{args.nodes} nodes, {args.requests} requests, seed {args.seed}, mean lifetime {args.mean_lifetime:.0f}")
    print("| strategy | placements/s | placed | CPU used | memory used |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['placements_per_s']:,.0f} | {r['placed_share']:.1%} | {r['cpu_utilisation']:.1%} "
              f"| {r['memory_utilisation']:.1%} |")  # fmt: skip
    ours, base = results["best-fit-spread"], results["first-fit"]
    print(f"ratio (ours / first fit): placed {ours['placed_share'] / base['placed_share']:.3f}, "
          f"speed {ours['placements_per_s'] / base['placements_per_s']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

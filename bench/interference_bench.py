"""Interference: the latency of a tenant's 1-row calls while another client sends 24 MiB
requests (1.5M rows of iris each) to the same runtime, beside the same 1-row client alone, in
one run: with one worker (both clients on it); with two (the kernel spreads connections over
the workers, so they may or may not share one); and with a bulk port (as the scheduler starts
runtimes), the big client sending to it, from anywhere or kept to the bulk worker's core (as a
client on another machine would take none of this machine's CPU).

    .venv/bin/python bench/interference_bench.py            # 3 rounds of 6 s per cell, ~4 minutes
    .venv/bin/python bench/interference_bench.py --rounds 5 --duration 10

Both clients are bench/loadgen.py processes (unary, one call in flight each); the runtime is
`python -m inference_svc`. Reported: medians over the rounds of the 1-row client's p50 and p99,
the p99 ratio beside/alone (target: within 2x), and how many big requests were answered per
second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime_bench import free_port, make_models, median, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
BIG_ROWS = 1_500_000  # x 4 features x 4 bytes = 24 MiB
CELLS = [  # (workers, bulk, label)
    (1, "", "1 worker, no bulk port (both clients on it)"),
    (2, "", "2 workers, no bulk port"),
    (2, "port", "2 workers + bulk worker (as deployed), big client anywhere"),
    (2, "port+client", "2 workers + bulk worker, big client on the bulk core"),
]


def loadgen(address: str, rows: int, duration: float, cpus: set[int] | None = None) -> subprocess.Popen:
    """A loadgen process; `cpus` keeps it to those CPUs."""
    command = [*(["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []),
        PY, str(HERE / "loadgen.py"), "--target", address, "--model", "iris", "--features", "4",
        "--rows", str(rows), "--concurrency", "1", "--mode", "unary", "--duration", str(duration),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def measure(model: Path, workers: int, rounds: int, duration: float, bulk: str) -> dict[str, list[dict]]:
    """`bulk`: "" (no bulk port), "port" (the big client sends to the bulk port), "port+client"
    (and runs on the bulk worker's core, as a client on another machine would not compete)."""
    port, bulk_port = free_port(), free_port() if bulk else -1
    runtime = subprocess.Popen(
        [PY, "-m", "inference_svc", "--port", str(port), "--metrics-port", "-1", "--workers", str(workers),
         "--bulk-port", str(bulk_port), "--model-uri", f"iris=file://{model}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    big_address = f"127.0.0.1:{bulk_port}" if bulk else address
    big_cpus = {sorted(os.sched_getaffinity(0))[-1]} if bulk == "port+client" else None
    cells: dict[str, list[dict]] = {"alone": [], "beside": [], "big": []}
    try:
        wait_ready(address, "iris")
        for _ in range(rounds):
            cells["alone"].append(result(loadgen(address, 1, duration)))
            heavy = loadgen(big_address, BIG_ROWS, duration + 1, big_cpus)
            cells["beside"].append(result(loadgen(address, 1, duration)))
            cells["big"].append(result(heavy))
    finally:
        runtime.terminate()
        runtime.wait(30)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    args = parser.parse_args()
    print("| runtime | 1-row p50 alone ms | p99 alone ms | p50 beside ms | p99 beside ms | p99 ratio | big req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        model = make_models(Path(tmp))["iris"][0]
        for workers, bulk, label in CELLS:
            cells = measure(model, workers, args.rounds, args.duration, bulk)
            p50 = {k: median([r["p50_ms"] for r in v]) for k, v in cells.items()}
            p99 = {k: median([r["p99_ms"] for r in v]) for k, v in cells.items()}
            big = median([r["requests_per_s"] for r in cells["big"]])
            cells_text = [p50["alone"], p99["alone"], p50["beside"], p99["beside"]]
            row = " | ".join(f"{v:.2f}" for v in cells_text)
            print(f"| {label} | {row} | {p99['beside'] / p99['alone']:.1f}x | {big:.2f} |", flush=True)


if __name__ == "__main__":
    main()

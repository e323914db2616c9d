"""The ceiling of rows/s for a model on this machine: ONNX Runtime called in a loop in-process
on the same random rows bench/loadgen.py sends, with one thread and with a thread per core
(spinning off, as the runtime's sessions). What one stream of large requests is measured against.

    .venv/bin/python bench/ort_rows.py --model digits --rows 1024
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from runtime_bench import make_models


def rows_per_s(path: Path, features: int, rows: int, threads: int, seconds: float) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: np.random.default_rng(0).random((rows, features), dtype=np.float32)}
    session.run(None, feeds)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        calls += 1
    return calls * rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    path, features, _ = make_models(Path(tempfile.mkdtemp()))[args.model]
    cores = len(os.sched_getaffinity(0))
    for threads in sorted({1, cores}):
        runs = [rows_per_s(path, features, args.rows, threads, args.seconds) for _ in range(args.rounds)]
        print(f"{args.model}, {args.rows} rows a call, {threads} thread(s): {statistics.median(runs):,.0f} rows/s")


if __name__ == "__main__":
    main()

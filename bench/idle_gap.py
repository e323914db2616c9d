"""How much slower the same work runs right after the process was idle, as a server is between
the messages of one stream at concurrency 1 (it waits for the client's next request).

For the iris logistic regression's ONNX Runtime call, and for a pure-Python stand-in of the
runtime's per-request bookkeeping, it prints the median time back to back and after idle gaps
of 0.2, 0.5 and 2 ms. On the 2-vCPU build machines the work costs about 4x more after a gap:
that, not the gRPC transport, is why 1-row streaming at concurrency 1 stays near 70% of the bare
echo server (which does almost nothing per message), while at 16 and 64 in flight (no gaps)
the runtime comes close to the echo ceiling. See the README's runtime section.

    python bench/idle_gap.py [--json bench/results/idle-gap.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from inference_svc.session import session_options
from mlaas.export import sklearn_to_onnx

GAPS_MS = (0.0, 0.2, 0.5, 2.0)


def bookkeeping(state: dict) -> None:
    """Dictionary, list and arithmetic work of the size a request's bookkeeping does."""
    for key in ("success", "queue", "input", "infer", "output"):
        entry = state.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += 12345
    state.setdefault("log", []).append(tuple(range(8)))
    if len(state["log"]) > 1000:
        state["log"].clear()


def median_us(work, gap_s: float, calls: int) -> float:
    times = []
    for _ in range(calls):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "iris.onnx"
        path.write_bytes(sklearn_to_onnx(LogisticRegression(max_iter=500).fit(X, y), X))
        session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    feeds = {session.get_inputs()[0].name: X[:1]}
    state: dict = {}
    works = {"onnx_run": lambda: session.run(outputs, feeds), "python_bookkeeping": lambda: bookkeeping(state)}
    results = {}
    for name, work in works.items():
        median_us(work, 0.0, 200)  # warm up
        results[name] = {f"gap_{gap}ms": round(median_us(work, gap / 1000, args.calls), 2) for gap in GAPS_MS}
    print("| work | " + " | ".join(f"after {gap} ms idle (us)" for gap in GAPS_MS) + " | slowdown at 0.5 ms |")
    print("|---|" + "---|" * (len(GAPS_MS) + 1))
    for name, by_gap in results.items():
        cells = " | ".join(f"{v:.1f}" for v in by_gap.values())
        print(f"| {name} | {cells} | {by_gap['gap_0.5ms'] / by_gap['gap_0.0ms']:.1f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

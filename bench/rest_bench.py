"""REST benchmark: the runtime's HTTP/REST endpoint beside MLServer's on the same models, in one
run with the same client (bench/http_load.py, its own process, keep-alive connections).

    .venv/bin/python bench/rest_bench.py                 # 3 rounds of 4 s per cell, ~3 minutes
    .venv/bin/python bench/rest_bench.py --rounds 5 --duration 6

Servers: `python -m inference_svc --http-port` with its defaults (workers = CPU limit), and
MLServer 1.7 (FastAPI on uvicorn, bench/mlserver_runtime, adaptive batching as in
runtime_bench.py). Requests: JSON tensors, 1 row (iris: 4 features; digits forest: 64), the
request both servers are sent most often over REST. Cells run back to back per round; medians
of the rounds are reported, with the ratio runtime/MLServer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from runtime_bench import free_port, make_models, median, start_mlserver, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def request_file(directory: Path, model: str, features: int) -> Path:
    row = np.random.default_rng(0).random(features, dtype=np.float32).round(4).tolist()
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, features], "data": row}]}
    path = directory / f"{model}.json"
    path.write_text(json.dumps(body))
    return path


def load(address: str, model: str, body: Path, concurrency: int, duration: float) -> dict:
    command = [PY, str(HERE / "http_load.py"), "--target", address, "--path", f"/v2/models/{model}/infer",
               "--body-file", str(body), "--concurrency", str(concurrency), "--duration", str(duration)]  # fmt: skip
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    if result["errors"]:
        raise RuntimeError(f"{address} answered {result['errors']} requests with an error")
    return result


def wait_http(address: str, model: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/models/{model}/ready", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{address} never said {model} is ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rest-bench-"))
    models = make_models(workdir)
    bodies = {name: request_file(workdir, name, features) for name, (_, features, _) in models.items()}
    grpc_port, http_port = free_port(), free_port()
    command = [
        PY,
        "-m",
        "inference_svc",
        "--port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--metrics-port",
        "-1",
    ]
    for name, (path, _, _) in models.items():
        command += ["--model-uri", f"{name}=file://{path}"]
    runtime = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "MLAAS_DATA_DIR": str(workdir / "data")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    mlserver_http = free_port()
    started = start_mlserver(models, workdir, http_port=mlserver_http)
    if started is None:
        raise SystemExit("MLServer could not be installed in its own venv")
    servers = {"runtime": f"127.0.0.1:{http_port}", "mlserver": f"127.0.0.1:{mlserver_http}"}
    cells: dict[tuple[str, str, int], list[dict]] = {}
    try:
        for name in models:
            wait_ready(f"127.0.0.1:{grpc_port}", name)
            for address in servers.values():
                wait_http(address, name)
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        for _ in range(args.rounds):
            for name in models:
                for concurrency in concurrencies:
                    for kind, address in servers.items():
                        result = load(address, name, bodies[name], concurrency, args.duration)
                        cells.setdefault((name, kind, concurrency), []).append(result)
    finally:
        for process in (runtime, started[0]):
            process.terminate()
            process.wait(30)
    print(f"REST, 1-row JSON requests, medians of {args.rounds} rounds of {args.duration:.0f} s")
    print("| model | concurrency | runtime req/s | MLServer req/s | ratio | runtime p50/p99 ms | MLServer p50/p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in models:
        for concurrency in concurrencies:
            ours, theirs = cells[(name, "runtime", concurrency)], cells[(name, "mlserver", concurrency)]

            def m(runs, key):
                return median([r[key] for r in runs])

            print(f"| {name} | {concurrency} | {m(ours, 'rps'):,.0f} | {m(theirs, 'rps'):,.0f} | "
                  f"{m(ours, 'rps') / m(theirs, 'rps'):.2f}x | {m(ours, 'p50_ms'):.2f} / {m(ours, 'p99_ms'):.2f} | "
                  f"{m(theirs, 'p50_ms'):.2f} / {m(theirs, 'p99_ms'):.2f} |")  # fmt: skip
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "rest.json").write_text(json.dumps({f"{k[0]}/{k[1]}/{k[2]}": v for k, v in cells.items()}))


if __name__ == "__main__":
    main()

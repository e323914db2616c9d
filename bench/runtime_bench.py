"""Inference runtime benchmark: this runtime beside the bare Python gRPC ceiling and MLServer,
measured in one run with the same asyncio client.

    .venv/bin/python bench/runtime_bench.py                 # full matrix, ~8 minutes
    .venv/bin/python bench/runtime_bench.py --quick --repeats 5

Servers, per model (iris logistic regression; a 100-tree digits random forest):
  minimal  bench/minimal_oip_server.py: one grpc.aio process, one onnxruntime session, no
           batching or checks: what the runtime's features should cost nothing beside.
  echo     bench/echo_server.py: parses each request and answers a prebuilt response of the real
           size, no decoding, no inference: what Python gRPC itself costs here (the ceiling).
  runtime  python -m inference_svc with its defaults (workers = CPU limit, no batching delay).
  mlserver MLServer 1.7 with bench/mlserver_runtime (one onnxruntime session), adaptive batching
           on (max_batch_size 256, max_batch_time 1 ms), in its own venv (needs protobuf<7;
           uvloop<0.22, since MLServer 1.7's worker pool fails on uvloop 0.22's get_event_loop).
Each cell runs the servers back to back, `--repeats` times; medians are reported. The client
(bench/loadgen.py, grpc.aio) runs as its own process and its CPU use is reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from venvs import ensure_venv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def make_models(directory: Path) -> dict[str, tuple[Path, int, int]]:
    """name -> (onnx path, feature count, output classes)"""
    from sklearn.datasets import load_digits, load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlaas.export import sklearn_to_onnx

    X, y = load_iris(return_X_y=True)
    iris = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    (directory / "iris.onnx").write_bytes(sklearn_to_onnx(iris, X.astype(np.float32)))
    X, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    (directory / "digits.onnx").write_bytes(sklearn_to_onnx(forest, X.astype(np.float32)))
    return {"iris": (directory / "iris.onnx", 4, 3), "digits": (directory / "digits.onnx", 64, 10)}


def free_port() -> int:
    from mlaas.services.net import free_port as pick

    return pick()


def wait_ready(address: str, model: str, timeout: float = 120) -> None:
    from mlaas.oip import open_inference_v2_pb2 as oip
    from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.ModelReady(oip.ModelReadyRequest(name=model), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} never reported {model} ready")


def start_mlserver(models: dict, workdir: Path, http_port: int | None = None) -> tuple[subprocess.Popen, str] | None:
    """MLServer serving `models`; (process, gRPC address). Its REST port is `http_port` if given."""
    bin_dir = ensure_venv("mlserver", ["mlserver==1.7.*", "uvloop<0.22", "onnxruntime", "numpy"])
    if bin_dir is None:
        return None
    binary = bin_dir / "mlserver"
    port = free_port()
    repo = workdir / "mlserver"
    repo.mkdir()
    (repo / "settings.json").write_text(
        json.dumps(
            {"http_port": http_port or free_port(), "grpc_port": port, "metrics_port": free_port(), "debug": False}
        )
    )
    for name, (path, _, _) in models.items():
        model_dir = repo / name
        model_dir.mkdir()
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": name,
            "implementation": "onnx_runtime.OnnxRuntimeModel",
            "max_batch_size": 256,
            "max_batch_time": 0.001,
            "parameters": {"uri": str(path)},
        }))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(HERE / "mlserver_runtime")}
    log = open(workdir / "mlserver.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen([str(binary), "start", str(repo)], env=env, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    for name in models:
        wait_ready(address, name)
    return process, address


def start_servers(models: dict, workdir: Path, runtime_args: list[str], with_mlserver: bool) -> dict:
    servers: dict[str, dict[str, tuple[subprocess.Popen | None, str]]] = {}
    for name, (_, _, columns) in models.items():
        port = free_port()
        echo = subprocess.Popen([PY, str(HERE / "echo_server.py"), "--port", str(port), "--output-columns",
                                 str(columns)], cwd=ROOT)  # fmt: skip
        servers.setdefault("echo", {})[name] = (echo, f"127.0.0.1:{port}")
    port = free_port()
    command = [PY, "-m", "inference_svc", "--port", str(port), "--metrics-port", "-1", *runtime_args]
    for name, (path, _, _) in models.items():
        command += ["--model-uri", f"{name}=file://{path}"]
    runtime = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "MLAAS_DATA_DIR": str(workdir / "data")},
        stdout=subprocess.DEVNULL, stderr=open(workdir / "runtime.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    servers["runtime"] = {name: (runtime, f"127.0.0.1:{port}") for name in models}
    port = free_port()
    minimal = subprocess.Popen(
        [PY, str(HERE / "minimal_oip_server.py"), "--port", str(port),
         *(f"--model-uri={name}={path}" for name, (path, _, _) in models.items())],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "minimal.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    servers["minimal"] = {name: (minimal, f"127.0.0.1:{port}") for name in models}
    if with_mlserver:
        started = start_mlserver(models, workdir)
        if started:
            servers["mlserver"] = {name: started for name in models}
    for kind, by_model in servers.items():
        for name, (_, address) in by_model.items():
            if kind != "echo":
                wait_ready(address, name)
    time.sleep(1.0)  # echo servers need no model; give them a moment to bind
    return servers


def run_cell(address: str, model: str, features: int, rows: int, concurrency: int, mode: str, duration: float):
    command = [
        PY, str(HERE / "loadgen.py"), "--target", address, "--model", model, "--features", str(features),
        "--rows", str(rows), "--concurrency", str(concurrency), "--mode", mode, "--duration", str(duration),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=duration * 10 + 60)
    if result.returncode != 0:
        return None  # e.g. a server without streaming support
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="iris,digits")
    parser.add_argument("--rows", default="1,64,1024")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--modes", default="unary,stream")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument(
        "--runtime-arg", action="append", default=[], help="extra runtime flag, e.g. --runtime-arg=--workers=1"
    )
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 and 64 rows, concurrency 1 and 16")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.concurrency = "1,64", "1,16"
    names = args.models.split(",")
    rows_list = [int(r) for r in args.rows.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    modes = args.modes.split(",")

    workdir = Path(tempfile.mkdtemp(prefix="mlaas-bench-"))
    models = {k: v for k, v in make_models(workdir).items() if k in names}
    servers = start_servers(models, workdir, args.runtime_arg, not args.no_mlserver)
    kinds = list(servers)
    measurements = []
    try:
        for model, mode, rows, concurrency in itertools.product(names, modes, rows_list, concurrencies):
            features = models[model][1]
            samples: dict[str, list] = {kind: [] for kind in kinds}
            for _ in range(args.repeats):
                for kind in kinds:
                    result = run_cell(servers[kind][model][1], model, features, rows, concurrency, mode, args.duration)
                    samples[kind].append(result)
            cell = {"model": model, "mode": mode, "rows": rows, "concurrency": concurrency}
            for kind in kinds:
                ok = [s for s in samples[kind] if s]
                cell[kind] = {key: median([s[key] for s in ok]) for key in ok[0]} if ok else None
            measurements.append(cell)
            print(json.dumps(cell), flush=True)
    finally:
        stopped = set()
        for by_model in servers.values():
            for process, _ in by_model.values():
                if process is not None and id(process) not in stopped:
                    stopped.add(id(process))
                    process.terminate()
                    process.wait(30)
    if args.json:
        args.json.write_text(json.dumps(measurements, indent=1))
    print_table(measurements, args)


def fmt(value, digits=0):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def print_table(measurements, args) -> None:
    print(f"\nmedians of {args.repeats} run(s) of {args.duration:.0f} s per cell; req/s = requests per second")
    print(
        "| model | mode | rows | conc | echo req/s | runtime req/s | runtime rows/s | runtime p50 / p99 ms "
        "| % of echo | minimal req/s | x minimal | MLServer req/s | MLServer p50 / p99 ms | x MLServer | client CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in measurements:
        echo, ours, theirs = cell.get("echo"), cell.get("runtime"), cell.get("mlserver")
        minimal = cell.get("minimal")
        ratio_minimal = ours["requests_per_s"] / minimal["requests_per_s"] if ours and minimal else None
        ratio_echo = ours["requests_per_s"] / echo["requests_per_s"] * 100 if ours and echo else None
        ratio_ml = ours["requests_per_s"] / theirs["requests_per_s"] if ours and theirs else None
        print(
            f"| {cell['model']} | {cell['mode']} | {cell['rows']} | {cell['concurrency']} "
            f"| {fmt(echo and echo['requests_per_s'])} | {fmt(ours and ours['requests_per_s'])} "
            f"| {fmt(ours and ours['rows_per_s'])} "
            f"| {fmt(ours and ours['p50_ms'], 2)} / {fmt(ours and ours['p99_ms'], 2)} | {fmt(ratio_echo)}% "
            f"| {fmt(minimal and minimal['requests_per_s'])} | {fmt(ratio_minimal, 2)} "
            f"| {fmt(theirs and theirs['requests_per_s'])} "
            f"| {fmt(theirs and theirs['p50_ms'], 2)} / {fmt(theirs and theirs['p99_ms'], 2)} "
            f"| {fmt(ratio_ml, 1)} | {fmt(ours and ours['client_cpu'], 2)} |"
        )


if __name__ == "__main__":
    main()

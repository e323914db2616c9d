"""Where the round trip of one streamed request goes, with one request in flight: the echo server
beside one runtime worker whose stream handler is cut down step by step, in one run, in
alternating rounds (1-row iris, one stream, one worker).

  echo     bench/echo_server.py: parses the request, answers a prebuilt response
  canned   the runtime's server and stream tasks, answering a prebuilt response
  decode   the same after decoding and checking the request against the signature
  bare     the least any server must do: the numpy view, the ONNX call and the response, with
           no signature checks, statistics, metrics or feedback
  runtime  the runtime's own handler

    .venv/bin/python bench/stream_bound.py [--rounds 5] [--duration 4] [--json FILE]

The `bare` row bounds what any Python server calling ONNX Runtime reaches here; see the README's
runtime benchmark. Each variant replaces DataPlane.start (where the data plane takes a streamed
request) in a worker started by this script (`--serve`), nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANTS = ("echo", "canned", "decode", "bare", "runtime")


def serve(variant: str, port: int, model_path: Path, cache_dir: Path) -> None:
    from echo_server import response_for

    from inference_svc.dataplane import DataPlane
    from inference_svc.server import run_worker
    from inference_svc.settings import RuntimeSettings
    from inference_svc.wire import Answer
    from mlaas.oip import open_inference_v2_pb2 as oip
    from mlaas.services.settings import ServerSettings

    prebuilt = response_for(1, 3)

    class Canned:
        """The prebuilt response as an answer (what the stream adapter serializes)."""

        def __init__(self, request_id: str):
            self._message = oip.ModelStreamInferResponse()
            self._message.infer_response.CopyFrom(prebuilt)
            self._message.infer_response.id = request_id

        def streamed(self) -> bytes:
            return self._message.SerializeToString()

    def answer_canned(self, request, kind, deliver):
        deliver(Canned(request.id))

    def answer_decoded(self, request, kind, deliver):
        self.prepare(request)
        deliver(Canned(request.id))

    def answer_bare(self, request, kind, deliver):
        loaded = self._repo.get(request.model_name)
        tensor = request.inputs[0]
        array = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(tuple(tensor.shape))
        outputs = loaded.model.run({tensor.name: array})
        answer = Answer()
        head = answer.head
        head.model_name, head.model_version, head.id = loaded.name, loaded.version, request.id
        for info in loaded.model.signature.tensor_outputs:
            answer.add_output(info.name, outputs[info.name], info.datatype)
        deliver(answer)

    handlers = {"canned": answer_canned, "decode": answer_decoded, "bare": answer_bare}
    if variant in handlers:
        DataPlane.start = handlers[variant]
    settings = RuntimeSettings(
        server=ServerSettings(port=port, metrics_port=-1),
        model_uris=(("iris", model_path.as_uri()),),
        cache_dir=cache_dir,
    )
    asyncio.run(run_worker(settings))


def start(variant: str, port: int, work: Path) -> subprocess.Popen:
    if variant == "echo":
        command = [sys.executable, str(HERE / "echo_server.py"), "--port", str(port), "--output-columns", "3"]
    else:
        command = [sys.executable, __file__, "--serve", variant, "--port", str(port), "--work", str(work)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=120)  # the worker loads its model first
    return process


def measure(port: int, duration: float) -> dict:
    command = [
        sys.executable, str(HERE / "loadgen.py"), "--target", f"127.0.0.1:{port}", "--model", "iris",
        "--features", "4", "--rows", "1", "--concurrency", "1", "--mode", "stream", "--duration", str(duration),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", choices=VARIANTS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.work / "iris.onnx", args.work / "cache")
        return

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlaas.export import sklearn_to_onnx
    from mlaas.services.net import free_port

    results: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        X, y = load_iris(return_X_y=True)
        X = X.astype(np.float32)
        (work / "iris.onnx").write_bytes(sklearn_to_onnx(LogisticRegression(max_iter=500).fit(X, y), X))
        for _ in range(args.rounds):
            for variant in VARIANTS:
                port = free_port()
                process = start(variant, port, work)
                try:
                    results[variant].append(measure(port, args.duration))
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                time.sleep(0.5)

    echo = statistics.median(r["requests_per_s"] for r in results["echo"])
    print(f"medians of {args.rounds} alternating rounds of {args.duration:.0f} s; 1-row iris, one request in flight")
    print("| handler | messages/s | % of echo | p50 us | rounds (messages/s) |")
    print("|---|---|---|---|---|")
    for variant, runs in results.items():
        rate = statistics.median(r["requests_per_s"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs) * 1000
        rounds = ", ".join(f"{r['requests_per_s']:,.0f}" for r in runs)
        print(f"| {variant} | {rate:,.0f} | {rate / echo:.0%} | {p50:.0f} | {rounds} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

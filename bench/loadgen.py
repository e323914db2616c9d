"""An asyncio gRPC load generator for the Open Inference Protocol (shared by the benchmarks).

Run as its own process so that its CPU use is measured apart from the server's:
    python bench/loadgen.py --target 127.0.0.1:8001 --model iris --rows 1 --concurrency 16 --mode unary
prints one JSON line: requests/s, rows/s, p50/p99 latency (ms) and the client's CPU seconds per
wall second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import grpc
import numpy as np

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def make_request(model: str, input_name: str, features: int, rows: int, seed: int = 0) -> oip.ModelInferRequest:
    data = np.random.default_rng(seed).random((rows, features), dtype=np.float32)
    return oip.ModelInferRequest(
        model_name=model,
        inputs=[oip.ModelInferRequest.InferInputTensor(name=input_name, datatype="FP32", shape=[rows, features])],
        raw_input_contents=[data.tobytes()],
    )


def channels(target: str, count: int) -> list[grpc.aio.Channel]:
    # Separate subchannel pools make separate TCP connections, which SO_REUSEPORT spreads over workers.
    return [
        grpc.aio.insecure_channel(target, options=[*OPTIONS, ("grpc.use_local_subchannel_pool", 1), ("x", i)])
        for i in range(count)
    ]


async def unary(target, request, concurrency, duration, warmup) -> tuple[list[float], float]:
    chans = channels(target, min(concurrency, 4))
    stubs = [oip_grpc.GRPCInferenceServiceStub(c) for c in chans]
    latencies: list[float] = []
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup

    async def worker(i):
        stub = stubs[i % len(stubs)]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            await stub.ModelInfer(request)
            if t0 >= measure_from:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    for c in chans:
        await c.close()
    return latencies, duration


async def stream(target, request, concurrency, duration, warmup) -> tuple[list[float], float]:
    """One bidirectional stream with `concurrency` requests in flight."""
    (chan,) = channels(target, 1)
    stub = oip_grpc.GRPCInferenceServiceStub(chan)
    call = stub.ModelStreamInfer()
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup
    window = asyncio.Semaphore(concurrency)
    counter = 0
    done_sending = asyncio.Event()

    async def send():
        nonlocal counter
        while time.perf_counter() < stop_at:
            await window.acquire()
            counter += 1
            request.id = str(counter)
            sent_at[request.id] = time.perf_counter()
            await call.write(request)
        await call.done_writing()
        done_sending.set()

    async def receive():
        async for response in call:
            if response.error_message:
                raise RuntimeError(response.error_message)
            now = time.perf_counter()
            t0 = sent_at.pop(response.infer_response.id)
            if t0 >= measure_from and now <= stop_at:
                latencies.append(now - t0)
            window.release()

    await asyncio.gather(send(), receive())
    await chan.close()
    return latencies, duration


def summarise(latencies: list[float], duration: float, rows: int, cpu: float, wall: float) -> dict:
    lat = np.array(latencies) * 1000
    return {
        "requests_per_s": len(lat) / duration,
        "rows_per_s": len(lat) * rows / duration,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "client_cpu": cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", default="X")
    parser.add_argument("--features", type=int, required=True)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--mode", choices=["unary", "stream"], default="unary")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    request = make_request(args.model, args.input, args.features, args.rows)
    run = unary if args.mode == "unary" else stream
    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    latencies, duration = asyncio.run(run(args.target, request, args.concurrency, args.duration, args.warmup))
    wall = time.perf_counter() - start
    end_cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end_cpu.ru_utime - start_cpu.ru_utime) + (end_cpu.ru_stime - start_cpu.ru_stime)
    print(json.dumps(summarise(latencies, duration, args.rows, cpu, wall)))


if __name__ == "__main__":
    main()

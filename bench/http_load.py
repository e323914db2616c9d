"""An HTTP/1.1 load generator for the REST benchmarks: `concurrency` keep-alive connections,
one request in flight on each, raw asyncio streams (an HTTP client library would cost the
client more CPU than the servers it measures). Prints one JSON line: req/s, p50/p99 ms, errors.

    python bench/http_load.py --target 127.0.0.1:8000 --path /v2/models/iris/infer --body-file req.json \\
        --concurrency 16 --duration 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path


async def drive(host: str, port: int, path: str, body: bytes, concurrency: int, duration: float, warmup: float) -> dict:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors = [0]
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while (started := time.perf_counter()) < stop_at:
            writer.write(head + body)
            header = await reader.readuntil(b"\r\n\r\n")
            length = int(header.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if not header.startswith(b"HTTP/1.1 200"):
                errors[0] += 1
            elif started >= measure_from:
                latencies.append(time.perf_counter() - started)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    latencies.sort()
    return {
        "rps": len(latencies) / duration,
        "p50_ms": statistics.median(latencies) * 1e3 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else None,
        "errors": errors[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    body = args.body_file.read_bytes()
    result = asyncio.run(drive(host, int(port), args.path, body, args.concurrency, args.duration, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

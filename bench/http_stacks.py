"""Which HTTP stack the runtime's REST endpoint is built on, chosen by measurement: each
candidate serves the same OIP-shaped handler (read a JSON inference request, answer a JSON
response of the same size as the runtime's for a 1-row iris call; no inference) in its own
process on one asyncio loop, and one client process (bench/http_load.py) drives it with
keep-alive connections.

    .venv/bin/python bench/http_stacks.py                 # 3 rounds of 4 s per stack and concurrency

Candidates: uvicorn (httptools parser) with a bare ASGI callable, the same with Starlette's
router, FastAPI on uvicorn (what MLServer and KServe use), and aiohttp's web server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REQUEST = json.dumps(
    {"id": "1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
).encode()
ANSWER = {
    "model_name": "iris", "model_version": "1", "id": "1",
    "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},
                {"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.97, 0.02, 0.01]}],
}  # fmt: skip
PATH = "/v2/models/iris/infer"
HERE = Path(__file__).resolve().parent
STACKS = ("uvicorn-asgi", "uvicorn-starlette", "fastapi", "aiohttp")


def handle(body: bytes) -> bytes:
    request = json.loads(body)
    answer = dict(ANSWER, id=request.get("id", ""))
    return json.dumps(answer).encode()


def serve(stack: str, port: int) -> None:
    if stack == "aiohttp":
        from aiohttp import web

        async def infer(request):
            return web.Response(body=handle(await request.read()), content_type="application/json")

        app = web.Application()
        app.router.add_post(PATH, infer)
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
        return
    import uvicorn

    if stack == "uvicorn-asgi":

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            payload = handle(body)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": payload})

    elif stack == "uvicorn-starlette":
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def infer(request):
            return Response(handle(await request.body()), media_type="application/json")

        app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])
    else:
        from fastapi import FastAPI, Request
        from fastapi.responses import Response

        app = FastAPI()

        @app.post("/v2/models/{name}/infer")
        async def infer(name: str, request: Request):
            return Response(handle(await request.body()), media_type="application/json")

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http="httptools", loop="asyncio"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--serve", nargs=2, metavar=("STACK", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    sys.path.insert(0, str(HERE.parent))
    from mlaas.services.net import free_port, wait_listening

    body_file = Path(tempfile.mkdtemp()) / "request.json"
    body_file.write_bytes(REQUEST)
    results: dict[tuple[str, int], list[dict]] = {}
    for stack in STACKS:
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", stack, str(port)])
        try:
            wait_listening(port)
            for concurrency in (1, 16):
                for _ in range(args.rounds):
                    out = subprocess.run(
                        [sys.executable, str(HERE / "http_load.py"), "--target", f"127.0.0.1:{port}", "--path", PATH,
                         "--body-file", str(body_file), "--concurrency", str(concurrency),
                         "--duration", str(args.duration)],
                        capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    results.setdefault((stack, concurrency), []).append(json.loads(out.stdout))
        finally:
            server.terminate()
            server.wait()
    print(f"| stack | req/s at 1 | p99 ms at 1 | req/s at 16 | p99 ms at 16 |  (medians of {args.rounds})")
    print("|---|---:|---:|---:|---:|")
    for stack in STACKS:
        cells = []
        for concurrency in (1, 16):
            runs = results[(stack, concurrency)]
            cells += [f"{statistics.median(r['rps'] for r in runs):,.0f}",
                      f"{statistics.median(r['p99_ms'] for r in runs):.2f}"]  # fmt: skip
        print(f"| {stack} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

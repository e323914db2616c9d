"""`python -m inference_svc`: serve registered ONNX models over the Open Inference Protocol v2.

python -m inference_svc --model iris-logreg@champion --registry 127.0.0.1:50051 --port 8001
python -m inference_svc --model-uri iris=file:///models/iris.onnx --port 8001 --http-port 8000 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from inference_svc.server import run
from inference_svc.settings import RuntimeSettings
from mlaas.services.private_files import private_by_default
from mlaas.services.settings import current_env


def parse_model_uri(text: str) -> tuple[str, str]:
    """NAME=URI, or a bare URI named after its file."""
    if "=" in text.split("://", 1)[0]:
        name, uri = text.split("=", 1)
        return name, uri
    return Path(text.split("://", 1)[-1]).stem, text


def main(argv: list[str] | None = None, preloaded: bool = False) -> int:
    """`preloaded`: this process has the data plane imported already (see server.run)."""
    parser = argparse.ArgumentParser(prog="python -m inference_svc", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="registry reference NAME[:VERSION|@ALIAS]")
    parser.add_argument("--model-uri", action="append", default=[], help="[NAME=]file://... or s3://...")
    parser.add_argument("--registry", help="registry address (env MLAAS_REGISTRY_ADDR)")
    parser.add_argument("--port", type=int, help="gRPC port (env MLAAS_INFERENCE_PORT; 0 picks one)")
    parser.add_argument("--http-port", type=int, help="REST port (env MLAAS_INFERENCE_HTTP_PORT; 0 picks one; -1: off)")
    parser.add_argument(
        "--bulk-port",
        type=int,
        help="gRPC port of the bulk worker for large requests (env MLAAS_INFERENCE_BULK_PORT; 0 picks one; -1: off)",
    )
    parser.add_argument("--workers", type=int, help="server processes sharing the port (default: the CPU limit)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (-1 turns it off)")
    parser.add_argument("--max-batch-size", type=int, help="rows per ONNX Runtime call")
    parser.add_argument("--max-queue-delay-us", type=int, help="how long a partial batch may wait for more rows")
    parser.add_argument("--max-queue-rows", type=int, help="queued rows before RESOURCE_EXHAUSTED")
    parser.add_argument(
        "--inline-compute-us", type=int, help="ONNX calls predicted shorter than this run on the event loop (0: never)"
    )
    parser.add_argument("--intra-op-threads", type=int, help="ONNX Runtime threads per worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runtime %(name)s %(levelname)s %(message)s")
    private_by_default()  # its model cache holds tenants' private models

    settings = RuntimeSettings.from_env(current_env())
    server = settings.server
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    if args.metrics_port is not None:
        server = dataclasses.replace(server, metrics_port=args.metrics_port)
    batch = settings.batch
    for field, value in (
        ("max_batch_size", args.max_batch_size),
        ("max_queue_delay_us", args.max_queue_delay_us),
        ("max_queue_rows", args.max_queue_rows),
        ("inline_compute_us", args.inline_compute_us),
    ):
        if value is not None:
            batch = dataclasses.replace(batch, **{field: value})
    settings = dataclasses.replace(
        settings,
        server=server,
        batch=batch,
        models=tuple(args.model) or settings.models,
        model_uris=tuple(parse_model_uri(u) for u in args.model_uri),
        registry_address=args.registry or settings.registry_address,
        workers=args.workers or settings.workers,
        http_port=settings.http_port if args.http_port is None else args.http_port,
        bulk_port=settings.bulk_port if args.bulk_port is None else args.bulk_port,
        intra_op_threads=args.intra_op_threads or settings.intra_op_threads,
    )
    if not settings.models and not settings.model_uris:
        parser.error("give at least one --model or --model-uri (more can be loaded with RepositoryModelLoad)")
    return run(settings, preloaded)


if __name__ == "__main__":
    sys.exit(main())

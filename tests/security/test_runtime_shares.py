"""One tenant's burst must not take a shared runtime from the others: each tenant's requests and
rows in flight on a worker are bounded (RESOURCE_EXHAUSTED naming the limit), so the model's
queue always has room for the other tenants. A real runtime under auth, one worker, a batching
window of 3 s so that a burst stays queued (a busy machine spread one burst's 20 calls over more
than the 300 ms it once was, and batches ran in between)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from mlaas.inference_client import build_request
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


def test_a_tenants_burst_leaves_the_queue_to_the_others(tmp_path, models_dir):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("token-alpha: alpha\ntoken-beta: beta\n")
    rt = start_runtime(
        tmp_path, "--workers", "1", "--max-queue-delay-us", "3000000", "--max-batch-size", "100000",
        "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_AUTH_TOKENS_FILE": str(tokens), "MLAAS_MAX_QUEUE_ROWS": "8000"},
    )  # fmt: skip
    rows = np.ones((1000, 4), np.float32)

    async def burst_then_one_call():
        async with grpc.aio.insecure_channel(rt.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)

            async def call(tenant: str, feeds: np.ndarray) -> grpc.StatusCode | str:
                metadata = [("authorization", f"Bearer token-{tenant}")]
                try:
                    await stub.ModelInfer(build_request("iris", {"X": feeds}), metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError as err:
                    return err.details() if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else err.code()
                return grpc.StatusCode.OK

            alpha = [asyncio.ensure_future(call("alpha", rows)) for _ in range(20)]  # 20,000 rows
            await asyncio.sleep(0.1)  # alpha's burst is queued, waiting for its batch
            beta = await call("beta", rows[:10])
            return await asyncio.gather(*alpha), beta

    try:
        alpha, beta = asyncio.run(burst_then_one_call())
    finally:
        stop_runtime(rt)
    assert beta == grpc.StatusCode.OK  # it used to be "inference queue is full"
    served = [a for a in alpha if a == grpc.StatusCode.OK]
    refused = [a for a in alpha if a != grpc.StatusCode.OK]
    assert len(served) == 4  # half the queue: 4,000 rows
    assert refused and all("limit per tenant is 4000 (MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT)" in r for r in refused)

"""Dynamic batching through a real runtime: concurrent callers coalesce into shared ONNX calls
and each gets exactly its own rows back; a full queue answers RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from mlaas.inference_client import build_request, read_response
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


@pytest.fixture(scope="module")
def delayed_runtime(tmp_path_factory, models_dir):
    """A 20 ms batching window, so concurrent requests must share calls."""
    tmp = tmp_path_factory.mktemp("batching")
    rt = start_runtime(
        tmp, "--workers", "1", "--max-queue-delay-us", "20000", "--max-batch-size", "64",
        "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
    )  # fmt: skip
    yield rt
    stop_runtime(rt)


def test_each_caller_gets_its_own_rows(delayed_runtime, models_dir):
    rng = np.random.default_rng(7)
    batches = [rng.random((int(rng.integers(1, 5)), 4), dtype=np.float32) * 7 for _ in range(48)]
    session = ort.InferenceSession(str(models_dir / "iris.onnx"), providers=["CPUExecutionProvider"])

    async def run():
        async with grpc.aio.insecure_channel(delayed_runtime.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            unary = [stub.ModelInfer(build_request("iris", {"X": b}, request_id=str(i))) for i, b in enumerate(batches)]
            call = stub.ModelStreamInfer(
                iter([build_request("iris", {"X": b}, request_id=f"s{i}") for i, b in enumerate(batches)])
            )
            streamed = [r async for r in call]
            return await asyncio.gather(*unary), streamed

    unary, streamed = asyncio.run(run())
    for i, response in enumerate(unary):
        assert response.id == str(i)
        expected = session.run(None, {"X": batches[i]})
        got = read_response(response)
        assert np.array_equal(got["label"], expected[0])
        assert np.allclose(got["probabilities"], expected[1])
    assert len(streamed) == len(batches)
    for response in streamed:
        i = int(response.infer_response.id[1:])
        assert np.array_equal(read_response(response.infer_response)["label"], session.run(None, {"X": batches[i]})[0])

    with grpc.insecure_channel(delayed_runtime.address) as channel:
        stats = oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(oip.ModelStatisticsRequest(name="iris"))
    model = stats.model_stats[0]
    assert model.inference_count == 2 * sum(len(b) for b in batches)
    assert model.execution_count < len(batches)  # requests shared ONNX calls
    assert max(b.batch_size for b in model.batch_stats) > 4


def test_a_full_queue_refuses_at_once(tmp_path, models_dir):
    rt = start_runtime(
        tmp_path, "--workers", "1", "--max-queue-delay-us", "2000000", "--max-batch-size", "1000",
        "--max-queue-rows", "8", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
    )  # fmt: skip
    try:

        async def run():
            async with grpc.aio.insecure_channel(rt.address) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                calls = [stub.ModelInfer(build_request("iris", {"X": np.ones((3, 4), np.float32)})) for _ in range(6)]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(run())
        refused = [r for r in results if isinstance(r, grpc.RpcError)]
        served = [r for r in results if not isinstance(r, Exception)]
        assert len(served) >= 2 and len(refused) >= 3
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "inference queue is full" in error.details()
    finally:
        stop_runtime(rt)

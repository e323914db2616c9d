"""Model warm-up at load, in process: real ONNX Runtime sessions, no server."""

from __future__ import annotations

import asyncio

import numpy as np
import onnx
from onnx import TensorProto, helper

from inference_svc.metrics import RuntimeMetrics
from inference_svc.repository import ModelRepository
from inference_svc.session import OnnxModel
from inference_svc.settings import BatchPolicy, RuntimeSettings
from mlaas.services.settings import ServerSettings


def reshape_model(path):
    """Reshapes X [N, 4] to the shape given in S: zeros in S are refused for this X."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["X", "S"], ["Y"])],
        "reshape",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("S", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_every_test_model_warms_up_on_zero_inputs_of_its_signature(models_dir):
    for name in ("iris", "identity", "fixed"):  # identity takes every datatype, BYTES included
        assert OnnxModel(models_dir / f"{name}.onnx").warm_up() > 0, name


def test_the_first_request_runs_at_once_and_warm_up_is_not_counted(models_dir, tmp_path):
    # An inline bound no warm-up measures beyond, even on a busy machine (the default 100 us
    # was once exceeded there): this test is about the measurement being there, not its value.
    settings = RuntimeSettings(
        server=ServerSettings.from_env({}, "inference", 0), cache_dir=tmp_path / "cache",
        batch=BatchPolicy(inline_compute_us=1_000_000),
    )  # fmt: skip
    reshape_model(tmp_path / "reshape.onnx")

    async def main():
        repository = ModelRepository(settings, RuntimeMetrics())
        iris = await repository.load_uri("iris", f"file://{models_dir / 'iris.onnx'}")
        assert iris.stats.proto("iris", "1").execution_count == 0
        # Measured by the warm-up: the first request needs no queue entry, no thread.
        outputs = iris.batcher.run_now({"X": np.zeros((1, 4), dtype=np.float32)}, 1)
        assert set(outputs) == {"label", "probabilities"}
        assert iris.stats.proto("iris", "1").execution_count == 1
        # A model that refuses zeros is served all the same, measured on its first requests.
        refusing = await repository.load_uri("reshape", f"file://{tmp_path / 'reshape.onnx'}")
        feeds = {"X": np.ones((1, 4), dtype=np.float32), "S": np.array([4], dtype=np.int64)}
        assert refusing.batcher.run_now(feeds, 1) is None
        assert np.array_equal((await refusing.batcher.submit(feeds, 1))["Y"], np.ones(4))
        await repository.close()

    asyncio.run(main())

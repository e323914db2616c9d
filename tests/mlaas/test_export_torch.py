"""PyTorch export (the `torch` extra): a module becomes ONNX with a variable batch dimension,
registers in one call, and onnxruntime gives the module's own outputs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from mlaas.export import register_torch, torch_to_onnx
from mlaas.v1 import types_pb2


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def test_onnx_matches_the_module():
    module = _module()
    session = ort.InferenceSession(torch_to_onnx(module, torch.randn(2, 4)), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    (got,) = session.run(None, {"input": x})
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_register_in_one_call(client):
    response = register_torch(client, _module(), torch.randn(1, 4), "torch-mlp", types_pb2.TASK_CLASSIFICATION)
    model = response.model
    assert model.description.framework.startswith("pytorch 2.")
    assert model.description.explainability.level == types_pb2.EXPLAINABILITY_LEVEL_POST_HOC
    assert [(s.name, s.datatype, list(s.shape)) for s in model.signature.inputs] == [("input", "FP32", [-1, 4])]

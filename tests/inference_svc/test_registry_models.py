"""The runtime with the registry: models fetched by reference and cached on disk by sha256,
several workers sharing one port with repository changes applied to all of them, and a clean
stop on SIGTERM."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from mlaas.client import RegistryClient
from mlaas.export import register_sklearn
from mlaas.inference_client import InferenceClient
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


def test_models_come_from_the_registry_and_are_cached(tmp_path, registry, iris_model):
    model, X, _ = iris_model
    address = f"127.0.0.1:{registry.port}"
    with RegistryClient(address) as client:
        registered = register_sklearn(client, model, "iris-logreg", X).model
        client.set_alias("iris-logreg", "champion", registered.version)
    env = {"MLAAS_REGISTRY_ADDR": address}
    rt = start_runtime(tmp_path, "--workers", "2", "--model", "iris-logreg@champion", env=env)
    cached = tmp_path / "data" / "runtime-cache" / f"{registered.artifact.sha256}.onnx"
    try:
        assert cached.exists()
        first_fetch = cached.stat().st_mtime_ns
        with InferenceClient(rt.address) as runtime:
            labels = runtime.infer("iris-logreg", {"X": X[:5]})["label"]
            assert np.array_equal(labels, model.predict(X[:5]))
            assert runtime.metadata("iris-logreg").versions == [str(registered.version)]

        # Load another model through one connection: every worker must serve it afterwards.
        with RegistryClient(address) as client:
            register_sklearn(client, model, "iris-copy", X)
        with grpc.insecure_channel(rt.address) as channel:
            oip_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(
                oip.RepositoryModelLoadRequest(model_name="iris-copy")
            )
        for attempt in range(12):  # fresh connections land on either worker (SO_REUSEPORT)
            with grpc.insecure_channel(
                rt.address, options=[("grpc.use_local_subchannel_pool", 1), ("n", attempt)]
            ) as ch:
                assert oip_grpc.GRPCInferenceServiceStub(ch).ModelReady(oip.ModelReadyRequest(name="iris-copy")).ready
    finally:
        assert stop_runtime(rt) == 0  # SIGTERM: workers drain and exit cleanly

    again = start_runtime(tmp_path, "--workers", "1", "--model", "iris-logreg@champion", env=env)
    try:
        assert cached.stat().st_mtime_ns == first_fetch  # served from the cache, not downloaded again
    finally:
        stop_runtime(again)

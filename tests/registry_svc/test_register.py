"""RegisterModel and the rpcs around it, against a real server on a free port with a real
SQLite file and content-addressed artifact files."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from mlaas import errors
from mlaas.client import RegistryClient
from mlaas.export import sklearn_to_onnx
from mlaas.recipes import recipe_from_steps
from mlaas.v1 import registry_pb2, types_pb2
from tests.conftest import tiny_onnx
from tests.registry_svc.helpers import describe, staging_files, stored_blobs


def test_round_trip_of_every_rpc(client, registry_settings, tmp_path):
    artifact = tiny_onnx(features=4)
    reference = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    desc = describe(
        "tiny",
        family="linear",
        metrics=[types_pb2.Metric(name="accuracy", value=0.9, dataset="toy/test")],
        tags=["b", "a", "a"],
    )
    created = client.register(artifact, desc, reference_data=reference)
    assert created.created
    model = created.model
    assert (model.description.name, model.version) == ("tiny", 1)
    assert model.artifact.sha256 == hashlib.sha256(artifact).hexdigest()
    assert model.artifact.size_bytes == len(artifact)
    assert model.reference_rows == 50
    assert list(model.description.tags) == ["a", "b"]
    # The signature is read from the graph, not from the client.
    assert [(s.name, s.datatype, list(s.shape)) for s in model.signature.inputs] == [("X", "FP32", [-1, 4])]
    assert [(s.name, s.datatype, list(s.shape)) for s in model.signature.outputs] == [("Y", "FP32", [-1, 1])]
    # Defaults for resources the client left out.
    assert model.description.run_resources.memory_bytes >= 256 * 2**20  # the runtime itself, and the model
    assert model.description.explainability.level == types_pb2.EXPLAINABILITY_LEVEL_NONE

    assert client.get("tiny").version == 1
    assert client.get("tiny:1").artifact.sha256 == model.artifact.sha256
    assert client.set_alias("tiny", "champion", 1).version == 1
    assert list(client.get("tiny@champion").aliases) == ["champion"]
    assert [m.version for m in client.list("tiny")] == [1]
    assert [r.model.version for r in client.find(name="tiny")] == [1]

    downloaded = client.download("tiny@champion", tmp_path / "model.onnx")
    assert downloaded.version == 1
    assert (tmp_path / "model.onnx").read_bytes() == artifact
    client.download("tiny:1", tmp_path / "ref.npy", kind=registry_pb2.ARTIFACT_KIND_REFERENCE_DATA)
    assert np.array_equal(np.load(tmp_path / "ref.npy"), reference)

    client.delete("tiny", 1)
    with pytest.raises(errors.NotFound, match="tiny:1 not found"):
        client.get("tiny:1")
    with pytest.raises(errors.NotFound):
        client.get("tiny@champion")
    assert stored_blobs(registry_settings.data_dir) == []


def test_same_bytes_twice_return_the_existing_version(client):
    artifact = tiny_onnx(seed=3)
    first = client.register(artifact, describe("idem"))
    again = client.register(artifact, describe("idem"))
    assert first.created and not again.created
    assert again.model.version == first.model.version == 1
    other = client.register(tiny_onnx(seed=4), describe("idem"))
    assert other.created and other.model.version == 2
    # The same bytes under another name are a new model, stored once.
    elsewhere = client.register(artifact, describe("idem-copy"))
    assert elsewhere.created and elsewhere.model.version == 1


@pytest.mark.parametrize(
    ("artifact", "message"),
    [
        (b"", "no artifact bytes"),
        (b"this is not an onnx model at all" * 10, "not a valid ONNX model"),
        (tiny_onnx()[:-7], "not a valid ONNX model"),
        (np.arange(100, dtype=np.float32).tobytes(), "not a valid ONNX model"),
    ],
    ids=["empty", "text", "truncated", "numpy-bytes"],
)
def test_bad_uploads_leave_nothing_behind(client, registry_settings, artifact, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        client.register(artifact, describe("broken"))
    assert stored_blobs(registry_settings.data_dir) == []
    assert staging_files(registry_settings.data_dir) == []
    assert list(client.list()) == []
    # A failed upload consumes no version number.
    assert client.register(tiny_onnx(), describe("broken")).model.version == 1


FOREST, MLP = "sklearn.ensemble.RandomForestClassifier", "sklearn.neural_network.MLPClassifier"


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        (describe("Bad Name"), "model name 'Bad Name' is invalid"),
        (describe("ok", task=types_pb2.TASK_UNSPECIFIED), "task is required"),
        (describe("ok", tags=["no spaces allowed"]), "tag 'no spaces allowed' is invalid"),
        (
            describe("ok", recipe=recipe_from_steps([("os.system", {})])),
            "recipe estimator 'os.system' is not allowed",
        ),
        (
            describe("ok", recipe=recipe_from_steps([("sklearn.linear_model.LogisticRegression", {"bogus": 1})])),
            r"unknown parameters \['bogus'\]",
        ),
        (describe("ok", run_resources=types_pb2.Resources(memory_bytes=-1)), "must not be negative"),
        (describe("ok", metrics=[types_pb2.Metric(name="acc", value=float("nan"))]), "non-finite"),
        (describe("x" * 10_000), r"model name 'xxx.*\.\.\. \(10000 characters\)' is invalid"),
        (describe("ok", run_resources=types_pb2.Resources(memory_bytes=2**63 - 1)), "must be at most"),
        (describe("ok", recipe=recipe_from_steps([(FOREST, {"n_estimators": 1e9})])), "n_estimators=1e[+]09 is above"),
        (describe("ok", recipe=recipe_from_steps([(MLP, {"hidden_layer_sizes": [100_000]})])), "8 layers of 4096"),
    ],
    ids=["name", "task", "tag", "estimator", "param", "resources", "metric", "long-name", "8EiB", "trees", "layers"],
)
def test_invalid_descriptions_are_refused_with_a_reason(client, registry_settings, desc, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        client.register(tiny_onnx(), desc)
    assert stored_blobs(registry_settings.data_dir) == []
    assert list(client.list()) == []


def test_reference_data_must_match_the_input(client, registry_settings, tmp_path):
    with pytest.raises(errors.InvalidArgument, match="reference data has 3 columns but the model input 'X' takes 4"):
        client.register(tiny_onnx(features=4), describe("ref"), reference_data=np.zeros((5, 3), np.float32))
    with pytest.raises(errors.InvalidArgument, match=r"must be a \.npy array"):
        client.register(tiny_onnx(features=4), describe("ref"), reference_data=_csv_file(tmp_path))
    with pytest.raises(errors.InvalidArgument, match="reference data must be finite"):
        client.register(tiny_onnx(features=4), describe("ref"), reference_data=np.full((5, 4), np.nan, np.float32))
    assert stored_blobs(registry_settings.data_dir) == []


def _csv_file(tmp_path):
    path = tmp_path / "not-numpy.npy"
    path.write_text("1,2,3,4\n")
    return path


def test_stream_protocol_errors(registry):
    import grpc

    from mlaas.v1 import registry_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{registry.port}") as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        cases = [
            (
                [registry_pb2.RegisterModelRequest(artifact_chunk=b"x")],
                "first message must carry the model description",
            ),
            ([registry_pb2.RegisterModelRequest(description=describe("a"))] * 2, "sent twice"),
            (
                [
                    registry_pb2.RegisterModelRequest(description=describe("a")),
                    registry_pb2.RegisterModelRequest(artifact_chunk=b"x" * (2**20 + 1)),
                ],
                "exceeds the 1 MiB chunk limit",
            ),
            ([], "no model description received"),
        ]
        for messages, expected in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.RegisterModel(iter(messages), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert expected in info.value.details()


def test_concurrent_registrations_get_unique_gapless_versions(client):
    results: list[int] = []
    failures: list[Exception] = []

    def register(seed: int) -> None:
        try:
            results.append(client.register(tiny_onnx(seed=100 + seed), describe("race")).model.version)
        except Exception as err:  # collected and asserted below
            failures.append(err)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(results) == list(range(1, 17))


def test_concurrent_identical_uploads_make_one_version(client):
    artifact = tiny_onnx(seed=77)
    versions: list[tuple[int, bool]] = []

    def register() -> None:
        response = client.register(artifact, describe("same"))
        versions.append((response.model.version, response.created))

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {v for v, _ in versions} == {1}
    assert sum(created for _, created in versions) == 1


def test_data_survives_a_restart(start_registry, registry_settings, tmp_path):
    first = start_registry(registry_settings)
    artifact = tiny_onnx(seed=9)
    with RegistryClient(f"127.0.0.1:{first.port}") as c:
        c.register(artifact, describe("durable"))
        c.register(tiny_onnx(seed=10), describe("durable"))
        c.set_alias("durable", "champion", 2)
    first.stop(0)

    second = start_registry(registry_settings)
    with RegistryClient(f"127.0.0.1:{second.port}") as c:
        assert [m.version for m in c.list("durable")] == [1, 2]
        assert c.get("durable@champion").version == 2
        c.download("durable:1", tmp_path / "back.onnx")
        assert (tmp_path / "back.onnx").read_bytes() == artifact
        assert c.register(tiny_onnx(seed=11), describe("durable")).model.version == 3


def test_large_artifact_streams_in_chunks(client, tmp_path):
    """A 48 MiB model goes up in 1 MiB chunks and comes back byte for byte."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(5).normal(size=(3072, 4096)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "large",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3072])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4096])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "large.onnx"
    onnx.save(model, path)
    seen: list[int] = []
    response = client.register(path, describe("large"), progress=lambda done, total: seen.append(done))
    assert response.model.artifact.size_bytes == path.stat().st_size
    assert len(seen) == -(-path.stat().st_size // 2**20)
    client.download("large", tmp_path / "back.onnx")
    assert hashlib.sha256((tmp_path / "back.onnx").read_bytes()).hexdigest() == response.model.artifact.sha256


def test_deletion_guard_refuses_deployed_versions(start_registry, registry_settings):
    class Deployed:
        def refusal(self, name, version):
            return "it has 2 active leases (deployment d-1)" if (name, version) == ("guarded", 1) else None

    server = start_registry(registry_settings, guard=Deployed())
    with RegistryClient(f"127.0.0.1:{server.port}") as c:
        c.register(tiny_onnx(seed=1), describe("guarded"))
        c.register(tiny_onnx(seed=2), describe("guarded"))
        with pytest.raises(errors.FailedPrecondition, match="cannot be deleted: it has 2 active leases"):
            c.delete("guarded", 1)
        assert c.get("guarded:1").version == 1
        c.delete("guarded", 2)
        with pytest.raises(errors.NotFound):
            c.delete("guarded", 2)


def test_alias_errors(client, tmp_path):
    client.register(tiny_onnx(), describe("aliased"))
    with pytest.raises(errors.NotFound, match="aliased:5 not found"):
        client.set_alias("aliased", "champion", 5)
    with pytest.raises(errors.InvalidArgument, match="alias '7' is invalid"):
        client.set_alias("aliased", "7", 1)
    with pytest.raises(errors.FailedPrecondition, match="without reference data"):
        client.download("aliased", tmp_path / "ref.npy", kind=registry_pb2.ARTIFACT_KIND_REFERENCE_DATA)


def test_sklearn_classifier_signature(client, iris_model):
    model, X, _ = iris_model
    response = client.register(sklearn_to_onnx(model, X), describe("iris"))
    outputs = {s.name: (s.datatype, list(s.shape)) for s in response.model.signature.outputs}
    assert outputs == {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, 3])}

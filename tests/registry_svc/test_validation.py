"""What the registry checks before it stores anything (registry_svc/validation.py), in process:
each refusal is an InvalidArgument that names the field and what would be accepted, and what
is accepted comes back normalised."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas.errors import InvalidArgument
from mlaas.export import sklearn_to_onnx
from mlaas.v1 import types_pb2
from registry_svc.validation import (
    RUNTIME_MEMORY,
    check_alias,
    check_name,
    fill_default_resources,
    inspect_onnx,
    validate_description,
    validate_reference_data,
)
from tests.registry_svc.helpers import describe

MIB = 2**20


@pytest.mark.parametrize("name", ["iris", "iris-v2", "a.b_c", "0", "x" * 63])
def test_a_name_of_lowercase_letters_digits_and_punctuation_is_taken(name):
    check_name(name)


@pytest.mark.parametrize("name", ["", "Iris", "-iris", "iris/../x", "iris model", "x" * 64])
def test_any_other_name_is_refused_with_what_a_name_may_be(name):
    with pytest.raises(InvalidArgument, match="use 1-63 lowercase letters, digits"):
        check_name(name)


def test_a_very_long_name_is_cut_in_the_message_so_that_the_status_fits():
    with pytest.raises(InvalidArgument) as refused:
        check_name("A" * 5_000)
    assert len(refused.value.message) < 300 and "(5000 characters)" in refused.value.message


def test_an_alias_starts_with_a_letter():
    check_alias("champion")
    with pytest.raises(InvalidArgument, match="alias '1st' is invalid"):
        check_alias("1st")


def test_a_description_comes_back_normalised():
    out = validate_description(describe("iris", tags=["b", "a", "b"]))
    assert list(out.tags) == ["a", "b"]  # sorted, once each
    assert out.explainability.level == types_pb2.EXPLAINABILITY_LEVEL_NONE
    assert out.visibility == types_pb2.VISIBILITY_PUBLIC


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"task": types_pb2.TASK_UNSPECIFIED}, "description.task is required"),
        ({"family": "RandomForest"}, "use lowercase snake_case"),
        ({"tags": [f"t{i}" for i in range(33)]}, "at most 32 tags"),
        ({"tags": ["a tag"]}, "tag 'a tag' is invalid"),
        ({"metrics": [types_pb2.Metric(name="", value=1.0)]}, "every metric needs a name"),
        ({"metrics": [types_pb2.Metric(name="acc", value=float("nan"))]}, "'acc' has a non-finite value"),
        ({"run_resources": types_pb2.Resources(cpu_millicores=-1)}, "run_resources.cpu_millicores must not"),
        ({"train_resources": types_pb2.Resources(gpus=65)}, "train_resources.gpus must be at most 64"),
    ],
)
def test_a_description_that_makes_no_sense_is_refused_by_field(fields, says):
    task = fields.pop("task", types_pb2.TASK_CLASSIFICATION)
    with pytest.raises(InvalidArgument, match=says):
        validate_description(describe("iris", task=task, **fields))


def test_resources_left_out_are_sized_from_the_artifact_and_those_given_are_kept():
    desc = describe("iris", run_resources=types_pb2.Resources(cpu_millicores=250))
    fill_default_resources(desc, 10 * MIB)
    assert desc.run_resources.cpu_millicores == 250  # given
    assert desc.run_resources.memory_bytes == RUNTIME_MEMORY + 40 * MIB
    assert desc.train_resources.cpu_millicores == 1000
    assert desc.train_resources.memory_bytes == RUNTIME_MEMORY + 128 * MIB + 80 * MIB


@pytest.fixture
def iris_onnx(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    path = tmp_path / "iris.onnx"
    path.write_bytes(sklearn_to_onnx(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X))
    return path


def test_an_onnx_model_gives_its_signature(iris_onnx):
    signature = inspect_onnx(iris_onnx)
    (features,) = signature.inputs
    assert features.datatype == "FP32" and list(features.shape) == [-1, 4]  # any batch size
    assert len(signature.outputs) >= 1


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(InvalidArgument, match="artifact is not a valid ONNX model"):
        inspect_onnx(path)


def test_reference_data_must_fit_the_model_input(iris_onnx, tmp_path):
    signature = inspect_onnx(iris_onnx)
    path = tmp_path / "reference.npy"
    np.save(path, np.zeros((10, 4), dtype=np.float32))
    assert validate_reference_data(path, signature) == 10
    refused = {
        "must be a 2-D array": np.zeros(4, dtype=np.float32),
        "must be numeric": np.array([["a", "b", "c", "d"]]),
        "must be finite": np.array([[0.0, np.nan, 0.0, 0.0]]),
        "has 3 columns but the model input": np.zeros((10, 3)),
    }
    for says, data in refused.items():
        np.save(path, data)
        with pytest.raises(InvalidArgument, match=says):
            validate_reference_data(path, signature)
    path.write_bytes(b"not numpy")
    with pytest.raises(InvalidArgument, match=r"must be a \.npy array"):
        validate_reference_data(path, signature)

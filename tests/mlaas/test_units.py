"""Small pure pieces of the shared package: quantities, references, recipes, datatypes."""

from __future__ import annotations

import numpy as np
import pytest

from mlaas import errors
from mlaas.datatypes import oip_datatype, oip_of_numpy
from mlaas.quantities import format_cpu, format_memory, parse_cpu, parse_memory
from mlaas.recipes import build_pipeline, recipe_from_steps, validate_recipe
from mlaas.refs import enum_value, format_ref, parse_ref
from mlaas.v1 import types_pb2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("1.5G", 1_500_000_000), ("1024", 1024), (77, 77),
     # what else Kubernetes accepts: exponents, Pi/Ei, P/E, fractions rounded up to a byte
     ("1e3", 1000), ("1E3", 1000), ("2Pi", 2 * 2**50), ("100Ei", 100 * 2**60), ("3P", 3 * 10**15),
     ("1.5Ki", 1536), ("0.5", 1), (".5Mi", 2**19), ("123m", 1)],
)  # fmt: skip
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500m", 500), ("2", 2000), ("0.25", 250), (1.5, 1500), ("1e-1", 100), ("1e2", 100_000), ("0.0001", 1),
     ("250000u", 250)],
)  # fmt: skip
def test_parse_cpu(text, expected):
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("text", ["lots", "1.2.3", "Mi", "5 Gi x", "1Zi", "1e", "--1"])
def test_not_quantities(text):
    with pytest.raises(ValueError, match="not a memory quantity"):
        parse_memory(text)


def test_resources_are_never_negative():
    for parse in (parse_memory, parse_cpu):
        with pytest.raises(ValueError, match="'-1' is negative"):
            parse("-1")


def test_quantity_errors_name_examples():
    with pytest.raises(ValueError, match="examples: 512Mi"):
        parse_memory("lots")
    with pytest.raises(ValueError, match="examples: 500m"):
        parse_cpu("fast")


def test_format_quantities():
    assert format_memory(256 * 2**20) == "256Mi"
    # free and allocatable side by side in one unit (they were 24041.5Mi/24684084Ki)
    assert (format_memory(25209315328), format_memory(24684084 * 1024)) == ("23.5Gi", "23.5Gi")
    assert format_memory(3 * 2**50) == "3Pi" and format_memory(512) == "512"
    assert format_cpu(1500) == "1500m" and format_cpu(2000) == "2"


def test_refs_round_trip():
    for text in ("iris", "iris:3", "iris@champion"):
        assert format_ref(parse_ref(text)) == text
    for bad in ("iris:0", "iris:x", "@champion", ""):
        with pytest.raises(errors.InvalidArgument):
            parse_ref(bad)


def test_enum_names():
    assert enum_value(types_pb2.Task, "TASK_", "classification") == types_pb2.TASK_CLASSIFICATION
    assert enum_value(types_pb2.Task, "TASK_", "TASK_REGRESSION") == types_pb2.TASK_REGRESSION
    with pytest.raises(errors.InvalidArgument, match="not one of: classification, regression"):
        enum_value(types_pb2.Task, "TASK_", "poetry")


def test_recipe_builds_a_working_pipeline():
    recipe = recipe_from_steps(
        [
            ("sklearn.preprocessing.PolynomialFeatures", {"degree": 2}),
            ("sklearn.linear_model.LogisticRegression", {"C": 10.0, "max_iter": 200}),
        ]
    )
    validate_recipe(recipe)
    pipeline = build_pipeline(recipe)
    assert pipeline.steps[0][1].degree == 2 and isinstance(pipeline.steps[0][1].degree, int)
    X = np.random.default_rng(0).normal(size=(200, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    assert pipeline.fit(X, y).score(X, y) > 0.9


def test_recipe_refuses_bad_values():
    with pytest.raises(errors.InvalidArgument, match="recipe step 0"):
        build_pipeline(recipe_from_steps([("sklearn.decomposition.PCA", {"n_components": "many", "whiten": 3})]))


def test_datatypes():
    assert oip_datatype("tensor(float)") == "FP32"
    assert oip_datatype("seq(map(int64,tensor(float)))") == ""
    assert oip_of_numpy(np.dtype(np.int16)) == "INT16"
    assert oip_of_numpy(np.dtype("<U5")) == "BYTES"

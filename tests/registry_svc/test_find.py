"""FindModels: every filter, the ranking rule and paging, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlaas import errors
from mlaas.client import find_request
from mlaas.recipes import recipe_from_steps
from mlaas.v1 import types_pb2
from tests.conftest import tiny_onnx, tool_env
from tests.registry_svc.helpers import describe

pytestmark = pytest.mark.spawns  # see pyproject.toml


MI = 2**20
INTRINSIC = types_pb2.EXPLAINABILITY_LEVEL_INTRINSIC
POST_HOC = types_pb2.EXPLAINABILITY_LEVEL_POST_HOC
NONE = types_pb2.EXPLAINABILITY_LEVEL_NONE


def _model(
    name,
    *,
    features=4,
    dtype="float",
    task=types_pb2.TASK_CLASSIFICATION,
    family="logistic_regression",
    framework="scikit-learn 1.9.1",
    cpu=500,
    memory=128 * MI,
    train_memory=512 * MI,
    level=INTRINSIC,
    accuracy=None,
    tags=(),
    seed=0,
):
    desc = describe(
        name,
        task=task,
        family=family,
        framework=framework,
        run_resources=types_pb2.Resources(cpu_millicores=cpu, memory_bytes=memory),
        train_resources=types_pb2.Resources(cpu_millicores=1000, memory_bytes=train_memory),
        explainability=types_pb2.Explainability(level=level),
        tags=list(tags),
    )
    if accuracy is not None:
        desc.metrics.add(name="accuracy", value=accuracy, dataset="holdout")
    return tiny_onnx(features=features, dtype=dtype, seed=seed), desc


CATALOGUE = [
    _model("small-linear", accuracy=0.91, memory=64 * MI, tags=("tabular", "fast")),
    _model(
        "big-forest",
        family="random_forest",
        accuracy=0.97,
        memory=900 * MI,
        level=POST_HOC,
        tags=("tabular",),
    ),
    _model(
        "mid-boost",
        family="gradient_boosting",
        accuracy=0.95,
        memory=200 * MI,
        level=POST_HOC,
        train_memory=4096 * MI,
    ),
    _model("regressor", task=types_pb2.TASK_REGRESSION, family="linear_regression", features=8, accuracy=None),
    _model(
        "wide-mlp",
        family="mlp",
        features=64,
        accuracy=0.93,
        memory=100 * MI,
        level=NONE,
        dtype="double",
        framework="pytorch 2.13",
    ),
    _model("tie-a", accuracy=0.80, memory=128 * MI, level=POST_HOC),
    _model("tie-b", accuracy=0.80, memory=96 * MI, level=POST_HOC),
    _model("tie-c", accuracy=0.80, memory=96 * MI, level=INTRINSIC),
]


@pytest.fixture
def catalogue(client):
    for artifact, desc in CATALOGUE:
        client.register(artifact, desc)
    return client


def names(results):
    return [r.model.description.name for r in results]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"task": "regression"}, {"regressor"}),
        ({"families": ["random_forest", "mlp"]}, {"big-forest", "wide-mlp"}),
        ({"framework": "pytorch"}, {"wide-mlp"}),
        ({"feature_count": 64}, {"wide-mlp"}),
        ({"datatype": "FP64"}, {"wide-mlp"}),
        (
            {"feature_count": 4, "datatype": "fp32", "task": "classification"},
            {"small-linear", "big-forest", "mid-boost", "tie-a", "tie-b", "tie-c"},
        ),
        (
            {"max_memory": "128Mi", "task": "classification"},
            {"small-linear", "wide-mlp", "tie-a", "tie-b", "tie-c"},
        ),
        ({"max_cpu": "250m"}, set()),
        ({"max_train_memory": "1Gi", "families": ["gradient_boosting", "random_forest"]}, {"big-forest"}),
        ({"min_explainability": "intrinsic", "task": "classification"}, {"small-linear", "tie-c"}),
        ({"min_explainability": "post_hoc", "max_memory": "100Mi"}, {"small-linear", "tie-b", "tie-c"}),
        ({"metrics": {"accuracy": 0.94}}, {"big-forest", "mid-boost"}),
        ({"tags": ["tabular", "fast"]}, {"small-linear"}),
        ({"tags": ["tabular"]}, {"small-linear", "big-forest"}),
        ({"name": "tie-a"}, {"tie-a"}),
    ],
)
def test_each_filter(catalogue, filters, expected):
    assert set(names(catalogue.find(**filters))) == expected


def test_metric_dataset_must_match(catalogue):
    request = find_request(metrics={"accuracy": 0.5})
    request.metrics[0].dataset = "another-set"
    assert catalogue.find(request) == []
    request.metrics[0].dataset = "holdout"
    assert len(catalogue.find(request)) == 7


def test_ranking_rule(catalogue):
    # Metric first (descending), then explainability (higher first), then lighter memory.
    ranked = catalogue.find(task="classification", metrics={"accuracy": 0.0})
    assert names(ranked) == ["big-forest", "mid-boost", "wide-mlp", "small-linear", "tie-c", "tie-b", "tie-a"]
    assert [r.rank for r in ranked] == list(range(1, 8))
    assert ranked[0].rank_metric_value == pytest.approx(0.97)
    # Models without the ranking metric come last.
    everything = catalogue.find(rank_by="accuracy")
    assert names(everything)[-1] == "regressor"


def test_paging_keeps_the_ranking(catalogue):
    whole = catalogue.find(rank_by="accuracy")
    request = find_request(rank_by="accuracy", page_size=3)
    first = catalogue.find_page(request)
    assert first.total_matches == len(whole) == 8
    assert first.next_page_token
    paged = catalogue.find(find_request(rank_by="accuracy", page_size=3))
    assert names(paged) == names(whole)
    assert [r.rank for r in paged] == list(range(1, 9))
    foreign = find_request(task="regression", page_size=3)
    foreign.page_token = first.next_page_token
    with pytest.raises(errors.InvalidArgument, match="page_token belongs to a different query"):
        catalogue.find_page(foreign)
    broken = find_request(rank_by="accuracy", page_size=3)
    broken.page_token = "%%%"
    with pytest.raises(errors.InvalidArgument, match="page_token is malformed"):
        catalogue.find_page(broken)


def test_latest_only_keeps_the_newest_matching_version(client):
    for seed, accuracy in ((1, 0.9), (2, 0.95), (3, 0.7)):
        artifact, desc = _model("versions", accuracy=accuracy, seed=seed)
        client.register(artifact, desc)
    assert [r.model.version for r in client.find(name="versions", rank_by="accuracy")] == [2, 1, 3]
    assert [r.model.version for r in client.find(name="versions", latest_only=True)] == [3]
    newest_good = client.find(name="versions", latest_only=True, metrics={"accuracy": 0.8})
    assert [r.model.version for r in newest_good] == [2]


def test_negative_limits_are_refused(catalogue):
    request = find_request()
    request.max_run_resources.memory_bytes = -5
    with pytest.raises(errors.InvalidArgument, match="must not be negative"):
        catalogue.find(request)


def test_recipe_and_description_survive_discovery(client):
    artifact, desc = _model("recipe")
    desc.recipe.CopyFrom(recipe_from_steps([("sklearn.linear_model.LogisticRegression", {"C": 0.5})]))
    client.register(artifact, desc)
    found = client.find(name="recipe")[0].model.description
    assert found.recipe.steps[0].estimator == "sklearn.linear_model.LogisticRegression"
    assert found.recipe.steps[0].params["C"] == 0.5


def test_cli_find_returns_ranked_json(catalogue, registry):
    command = [
        sys.executable,
        "-m",
        "mlaas.cli",
        "model",
        "find",
        "--task",
        "classification",
        "--max-memory",
        "256Mi",
        "--min-metric",
        "accuracy=0.9",
        "--json",
        "--registry",
        f"127.0.0.1:{registry.port}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=60, check=True)
    results = json.loads(out.stdout)
    assert [r["model"]["description"]["name"] for r in results] == ["mid-boost", "wide-mlp", "small-linear"]
    assert [r["rank"] for r in results] == [1, 2, 3]

"""Retraining rounds on a STRICT deployment's node (RunTrainingJob with a NodeRound) on real
parts: the scheduler with two named nodes, real runtimes, real training jobs (child processes),
and the deployment's node store (SQLite), filled here as its runtimes fill it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.demos.scenarios import sea, sea_classifier
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound
from mlaas.export import register_sklearn
from mlaas.services.auth import MONITOR
from mlaas.services.label_store import LabelStore
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.settings import parse_nodes

S = scheduler_pb2
ONE_CPU = types_pb2.Resources(cpu_millicores=1000, memory_bytes=256 << 20)
# A private fit runs a second Python (diffprivlib's environment) beside the job's.
TRAIN = types_pb2.Resources(cpu_millicores=1000, memory_bytes=1 << 30)


def keep_on_node(parts, deployment_id: str, X: np.ndarray, y: np.ndarray, predictions: np.ndarray) -> None:
    """Predictions of version 1 and their labels, in the deployment's store on its node."""
    store = LabelStore(Path(parts.runtime_env["MLAAS_DATA_DIR"]) / "node" / f"{deployment_id}.sqlite3")
    ids = [f"r-{i}" for i in range(len(X))]
    store.add_predictions(deployment_id, ids, 1, X.astype(np.float64), [str(p) for p in predictions])
    store.add_labels(deployment_id, list(zip(ids, map(str, y), strict=True)))
    store.close()


@pytest.fixture
def strict_sea(parts):
    """A scheduler over node-a (2 CPUs) and node-b (8 CPUs), and SEA (concept 0) deployed STRICT
    on node-a with 1,000 labels of concept 3 kept there."""
    champion = sea_classifier()
    X_train, _ = sea(2_000, 0, np.random.default_rng(0))
    with RegistryClient(parts.registry_address) as registry:
        register_sklearn(
            registry, champion, "sea", X_train, reference_data=X_train[:500], run_resources=ONE_CPU,
            train_resources=TRAIN,
        )  # fmt: skip
    scheduler = parts.start(nodes=parse_nodes("node-a:cpu=2,memory=4Gi;node-b:cpu=8,memory=16Gi"))
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
        deployment = client.wait_ready(client.deploy("sea", strict_node="node-a").id)
        X, y = sea(1_000, 3, np.random.default_rng(1))
        keep_on_node(parts, deployment.id, X, y, champion.predict(X))
        yield client, deployment


def test_a_round_runs_on_its_deployments_node_only_and_waits_there_for_room(strict_sea):
    client, deployment = strict_sea
    other = client.wait_ready(client.deploy("iris", strict_node="node-a").id)  # node-a is full now
    plan = S.NodeRound(deployment_id=deployment.id, confidence=0.95)
    job = client.run_node_round("sea", plan)
    assert job.state == S.JOB_STATE_PENDING and job.node == "node-a" and "node-a" in job.reason
    assert job.resources.memory_bytes == TRAIN.memory_bytes + (256 << 20)  # a fit's, and ONNX Runtime to judge
    with pytest.raises(FailedPrecondition, match=f"has a round on its node already \\({job.id}\\): one at a time"):
        client.run_node_round("sea", plan)  # pending rounds cannot pile up
    time.sleep(1.5)  # the job watcher ran several times, and node-b has room for it: it waits
    waiting = client.training_job(job.id)
    assert waiting.state == S.JOB_STATE_PENDING and waiting.node == "node-a" and not waiting.handle
    client.decommission(other.id)  # cached: its room goes to the job
    done = client.wait_training_job(job.id, timeout=120)
    assert done.node == "node-a" and done.input_uri == ""
    result = done.round_result
    # cross-validated: every label judges, each predicted by fits that never learnt it
    assert result.better and result.training_samples == 1_000 and result.held_out_samples == 1_000
    assert result.challenger.value > result.champion.value + 0.05 and "better (p=" in result.reason
    assert "(cross-validated)" in result.reason
    session = onnxruntime.InferenceSession(client.training_job_output(done.id))
    X, y = sea(2_000, 3, np.random.default_rng(2))
    labels = session.run(None, {session.get_inputs()[0].name: X})[0]
    assert np.mean(labels == y) > 0.85  # it learnt concept 3 (10% of the labels are noise)


def test_a_private_round_spends_its_epsilon_and_rolls_out_what_it_judged(strict_sea):
    client, deployment = strict_sea
    plan = S.NodeRound(deployment_id=deployment.id, confidence=0.5, epsilon=40.0)
    done = client.wait_training_job(client.run_node_round("sea", plan).id, timeout=120)
    result = done.round_result
    assert result.epsilon_spent == pytest.approx(40.0)
    assert result.held_out_samples == 250
    # Fitted again on all rows, a private model would spend its epsilon twice: the challenger
    # judged on the held-out part is the one that rolls out.
    assert result.training_samples == 750


def test_the_privacy_terms_hold_for_every_round_whoever_asks_for_it(strict_sea):
    """The owner sets epsilon 1 a round and 2.5 in all; a round asked straight of the scheduler
    at epsilon 50, without privacy, or as a federated step (exact counts, no privacy) is refused;
    a round refused for another reason (one at a time) spends nothing; the third round at
    epsilon 1 goes past the budget."""
    client, deployment = strict_sea
    terms = client.set_privacy(deployment.id, epsilon=1.0, budget=2.5).privacy
    assert (terms.epsilon, terms.budget, terms.spent) == (1.0, 2.5, 0.0)
    for plan, refusal in (
        (S.NodeRound(epsilon=50.0), "spends at most epsilon 1, and this one asks 50"),
        (S.NodeRound(epsilon=0.0), "every round on its node fits with differential privacy"),
        (S.NodeRound(epsilon=1e-300), "a round spends at least epsilon 0.001"),  # else rounds would be free
        (S.NodeRound(parameters_only=True), "federated rounds have no differential privacy yet"),
    ):
        plan.MergeFrom(S.NodeRound(deployment_id=deployment.id, confidence=0.5))
        with pytest.raises(FailedPrecondition, match=refusal):
            client.run_node_round("sea", plan)
    assert client.get(deployment.id).privacy.spent == 0.0
    plan = S.NodeRound(deployment_id=deployment.id, confidence=0.5, epsilon=1.0)
    first = client.run_node_round("sea", plan)
    with pytest.raises(FailedPrecondition, match="has a round on its node already"):
        client.run_node_round("sea", plan)
    assert client.get(deployment.id).privacy.spent == pytest.approx(1.0)  # the refused one gave it back
    done = client.wait_training_job(first.id, timeout=120)
    assert done.round_result.epsilon_spent == pytest.approx(1.0)
    client.wait_training_job(client.run_node_round("sea", plan).id, timeout=120)
    assert client.get(deployment.id).privacy.spent == pytest.approx(2.0)
    with pytest.raises(FailedPrecondition, match=r"privacy budget: 2 of 2\.5 spent, and a round spends 1"):
        client.run_node_round("sea", plan)
    with pytest.raises(InvalidArgument, match=r"privacy\.budget .* must be at least privacy\.epsilon"):
        client.set_privacy(deployment.id, epsilon=2.0, budget=1.0)
    assert client.set_privacy(deployment.id, epsilon=1.0, budget=3.0).privacy.spent == pytest.approx(2.0)  # kept
    open_one = client.wait_ready(client.deploy("iris").id)
    with pytest.raises(FailedPrecondition, match="is OPEN: privacy terms guard the data kept on a STRICT"):
        client.set_privacy(open_one.id, epsilon=1.0, budget=2.0)


def test_bad_rounds_are_refused_with_the_reason(strict_sea, parts):
    client, deployment = strict_sea
    with pytest.raises(InvalidArgument, match="confidence must be between 0 and 1"):
        client.run_node_round("sea", S.NodeRound(deployment_id=deployment.id, confidence=1.0))
    with pytest.raises(InvalidArgument, match="epsilon must be 0"):
        client.run_node_round("sea", S.NodeRound(deployment_id=deployment.id, confidence=0.9, epsilon=-1))
    with pytest.raises(NotFound):
        client.run_node_round("sea", S.NodeRound(deployment_id="d-nope", confidence=0.9))
    with pytest.raises(
        InvalidArgument, match=r"its input \(input_data or input_uri\) is the candidate model of a federated"
    ):
        request = S.RunTrainingJobRequest(
            model=types_pb2.ModelRef(name="sea"), input_uri="file:///etc/passwd",
            node_round=S.NodeRound(deployment_id=deployment.id, confidence=0.9),
        )  # fmt: skip
        client._call(client._stub.RunTrainingJob, request)
    with pytest.raises(InvalidArgument, match="serves sea:1, not that model"):
        client.run_node_round("iris", S.NodeRound(deployment_id=deployment.id, confidence=0.9))
    open_one = client.wait_ready(client.deploy("iris").id)
    with pytest.raises(FailedPrecondition, match="is OPEN: its labels are in the Monitor"):
        client.run_node_round("iris", S.NodeRound(deployment_id=open_one.id, confidence=0.9))
    X, y = sea(200, 0, np.random.default_rng(3))
    with RegistryClient(parts.registry_address) as registry:
        forest = RandomForestClassifier(n_estimators=5).fit(X, y)
        register_sklearn(registry, forest, "sea-forest", X, run_resources=ONE_CPU)
    strict_forest = client.wait_ready(client.deploy("sea-forest", strict_node="node-b").id)
    with pytest.raises(FailedPrecondition, match=r"no differentially private counterpart for .*RandomForest"):
        client.run_node_round("sea-forest", S.NodeRound(deployment_id=strict_forest.id, confidence=0.9, epsilon=1))
    # None of them holds a node's resources: each was refused before it was placed.
    assert all(n.allocated.cpu_millicores == 1000 for n in client.nodes() if n.name == "node-b")


def test_under_auth_a_round_on_a_tenants_node_is_its_own_or_the_monitors(parts, identities):
    """Beta cannot start a round on alpha's STRICT deployment, nor learn that it exists."""
    scheduler = parts.start(server=identities.server())
    address = f"127.0.0.1:{scheduler.server.port}"
    with SchedulerClient(address, identities.token("alpha")) as alpha:
        deployment = alpha.wait_ready(alpha.deploy("iris", strict_node="node-a").id)
    plan = S.NodeRound(deployment_id=deployment.id, confidence=0.9)
    with SchedulerClient(address, identities.token("beta")) as beta, pytest.raises(NotFound, match="not found"):
        beta.run_node_round("iris", plan)
    with SchedulerClient(address, identities.token(MONITOR)) as monitor:
        private = S.NodeRound(deployment_id=deployment.id, confidence=0.9, epsilon=1.0)
        with pytest.raises(FailedPrecondition, match="reference data onto the node, and that data is its owner's"):
            monitor.run_node_round("iris", private)  # iris is not alpha's: its reference rows stay off alpha's node
        job = monitor.run_node_round("iris", plan)
        assert job.node == "node-a" and job.tenant == MONITOR
        # iris has no labels on node-a: the job says so, and nothing is left running
        with pytest.raises(FailedPrecondition, match="0 labels after 0 on this node: too few to retrain"):
            monitor.wait_training_job(job.id, timeout=120)


def test_a_failed_round_says_why_without_a_word_of_the_nodes_data(strict_sea, parts):
    """A job's exception may quote a label or a row (scikit-learn names the one class it found):
    a round's log stays on the node, and the mesh gets only the note the job chose."""
    client, deployment = strict_sea
    X, _ = sea(300, 3, np.random.default_rng(5))
    store = LabelStore(Path(parts.runtime_env["MLAAS_DATA_DIR"]) / "node" / f"{deployment.id}.sqlite3")
    ids = [f"s-{i}" for i in range(len(X))]
    store.add_predictions(deployment.id, ids, 1, X.astype(np.float64), ["0"] * len(X))
    store.add_labels(deployment.id, [(i, "SECRET-LABEL-XYZ") for i in ids])
    store.close()
    first = 1_000  # the labels kept by the fixture come first; these are all one (secret) class
    job = client.run_node_round("sea", S.NodeRound(deployment_id=deployment.id, since_label=first, confidence=0.9))
    with pytest.raises(FailedPrecondition, match="the round failed with ValueError; its log stays on this node") as err:
        client.wait_training_job(job.id, timeout=120)
    assert "SECRET" not in str(err.value)
    assert "SECRET" not in client.training_job(job.id).reason

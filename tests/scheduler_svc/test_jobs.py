"""Training jobs: placed with the model's train resources, run as child processes that fit the
registered recipe, ended by the watcher; and the statuses bad requests get."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from mlaas.export import register_sklearn
from mlaas.v1 import scheduler_pb2, types_pb2
from tests.conftest import tiny_onnx

S = scheduler_pb2


@pytest.fixture
def scheduler(parts):
    started = parts.start()
    with SchedulerClient(f"127.0.0.1:{started.server.port}") as client:
        yield client, parts.settings.jobs_dir


def test_a_training_job_fits_the_recipe_and_holds_its_resources_while_it_runs(scheduler, iris_model):
    client, jobs_dir = scheduler
    _, X, y = iris_model
    np.savez(jobs_dir / "data.npz", X=X, y=y)
    job = client.run_training_job("iris", f"file://{jobs_dir}/data.npz", f"file://{jobs_dir}/model.onnx")
    assert job.state == S.JOB_STATE_RUNNING and job.node == "node-a" and job.model.version == 1
    assert job.resources.cpu_millicores == 1000  # iris has no train resources: the default
    busy = {n.name: n for n in client.nodes()}["node-a"]
    assert busy.allocated.cpu_millicores == 1000  # held while it runs
    done = client.wait_training_job(job.id, timeout=120)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.finished_at.seconds
    session = onnxruntime.InferenceSession(str(jobs_dir / "model.onnx"))
    labels = session.run(None, {session.get_inputs()[0].name: X})[0]
    assert np.mean(labels == y) > 0.9
    assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0


def test_a_job_that_fails_says_why(scheduler):
    client, jobs_dir = scheduler
    np.savez(jobs_dir / "no-labels.npz", X=np.zeros((5, 4), np.float32))
    job = client.run_training_job("iris", f"file://{jobs_dir}/no-labels.npz", f"file://{jobs_dir}/out.onnx")
    with pytest.raises(FailedPrecondition, match=r"j-\w+ failed: exited with 2: .* must hold the arrays X"):
        client.wait_training_job(job.id, timeout=120)


def test_bad_training_jobs_are_refused(scheduler, parts, tmp_path):
    client, jobs_dir = scheduler
    np.savez(jobs_dir / "data.npz", X=np.zeros((5, 4), np.float32), y=np.zeros(5))
    with RegistryClient(parts.registry_address) as registry:
        registry.register(tiny_onnx(), types_pb2.ModelDescription(name="no-recipe", task=types_pb2.TASK_REGRESSION))
        huge = types_pb2.Resources(cpu_millicores=64_000, memory_bytes=1 << 30)
        X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
        register_sklearn(registry, LogisticRegression().fit(X, X[:, 0] > 0), "greedy", X, train_resources=huge)
    good_in, good_out = f"file://{jobs_dir}/data.npz", f"file://{jobs_dir}/out.onnx"
    with pytest.raises(InvalidArgument, match="output_uri file:///etc/passwd is outside the jobs directory"):
        client.run_training_job("iris", good_in, "file:///etc/passwd")
    with pytest.raises(InvalidArgument, match="is outside the jobs directory"):
        client.run_training_job("iris", f"file://{jobs_dir}/../escape.npz", good_out)
    with pytest.raises(InvalidArgument, match="does not exist"):
        client.run_training_job("iris", f"file://{jobs_dir}/missing.npz", good_out)
    with pytest.raises(InvalidArgument, match="must be a file:// URI"):
        client.run_training_job("iris", "s3://bucket/data.npz", good_out)
    with pytest.raises(FailedPrecondition, match="no-recipe:1 has no training recipe"):
        client.run_training_job("no-recipe", good_in, good_out)
    with pytest.raises(ResourceExhausted, match="no node can run the training job now"):
        client.run_training_job("greedy", good_in, good_out)
    assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0  # nothing half-made
    with pytest.raises(NotFound, match="training job 'j-nope' not found"):
        client.wait_training_job("j-nope", timeout=1)

"""Warm trainers on the local backend: a node's trainer starts with its first replica and forks
the training jobs placed there, which keep a cold job's rules (their own log and session, the
memory watch, FAILED with the reason); the trainer outlives their failures, and a node whose
trainer died gets a cold job and a new trainer."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import onnxruntime
import psutil
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import FailedPrecondition
from mlaas.export import register_sklearn
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends import ReplicaStatus

S = scheduler_pb2


def wait_warm(trainers, node: str) -> int:
    """The pid of the node's trainer once it is ready."""
    deadline = time.monotonic() + 120
    while not trainers.ensure(node).ready():
        assert time.monotonic() < deadline, "the warm trainer never got ready"
        time.sleep(0.1)
    return trainers.ensure(node).pid


def job_log(scheduler, job) -> str:
    return scheduler.backend.logs(ReplicaStatus(job.id, "", True, handle=job.handle), lines=50)


@pytest.fixture
def warm(parts):
    """(scheduler, client, jobs dir) with iris deployed on node-a, whose trainer is ready."""
    scheduler = parts.start(warm_trainers=True)
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
        client.wait_ready(client.deploy("iris").id)
        yield scheduler, client, parts.settings.jobs_dir


def test_jobs_are_forked_warm_and_the_trainer_outlives_their_failures(warm, iris_model):
    scheduler, client, jobs_dir = warm
    _, X, y = iris_model
    trainer = wait_warm(scheduler.backend.trainers, "node-a")
    np.savez(jobs_dir / "no-labels.npz", X=np.zeros((5, 4), np.float32))
    failing = client.run_training_job("iris", f"file://{jobs_dir}/no-labels.npz")
    with pytest.raises(FailedPrecondition, match=r"(?s)exited with 2: .* must hold the arrays X"):
        client.wait_training_job(failing.id, timeout=120)
    assert f"forked by warm trainer {trainer}" in job_log(scheduler, failing)

    np.savez(jobs_dir / "data.npz", X=X, y=y)
    job = client.run_training_job("iris", f"file://{jobs_dir}/data.npz")
    done = client.wait_training_job(job.id, timeout=120)
    assert f"forked by warm trainer {trainer}" in job_log(scheduler, job)
    session = onnxruntime.InferenceSession(client.training_job_output(done.id))
    assert np.mean(session.run(None, {session.get_inputs()[0].name: X})[0] == y) > 0.9
    stages = [s.stage for s in done.stages]
    assert stages == ["placed", "started", "ready", "fitted", "exported", "ended"]
    assert psutil.Process(trainer).is_running() and scheduler.backend.trainers.ensure("node-a").pid == trainer
    assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 1000  # the replica's only


def test_a_forked_job_over_its_memory_is_stopped_and_the_trainer_goes_on(warm, parts, iris_model):
    scheduler, client, jobs_dir = warm
    _, X, y = iris_model
    with RegistryClient(parts.registry_address) as registry:
        small = types_pb2.Resources(cpu_millicores=1000, memory_bytes=16 << 20)  # below any Python's
        register_sklearn(registry, LogisticRegression().fit(X, y), "iris-small", X, train_resources=small)
    trainer = wait_warm(scheduler.backend.trainers, "node-a")
    big = np.tile(X, (20_000, 1))  # a fit long enough for the memory watch to see it
    np.savez(jobs_dir / "big.npz", X=big, y=np.tile(y, 20_000))
    job = client.run_training_job("iris-small", f"file://{jobs_dir}/big.npz")
    with pytest.raises(FailedPrecondition, match="resident, more than the job's 16Mi"):
        client.wait_training_job(job.id, timeout=120)
    assert psutil.Process(trainer).is_running()
    np.savez(jobs_dir / "data.npz", X=X, y=y)
    after = client.wait_training_job(client.run_training_job("iris", f"file://{jobs_dir}/data.npz").id, timeout=120)
    assert after.state == S.JOB_STATE_SUCCEEDED and f"forked by warm trainer {trainer}" in job_log(scheduler, after)


def test_a_node_whose_trainer_died_gets_a_cold_job_and_a_new_trainer(warm, iris_model):
    scheduler, client, jobs_dir = warm
    _, X, y = iris_model
    trainers = scheduler.backend.trainers
    dead = wait_warm(trainers, "node-a")
    os.kill(dead, signal.SIGKILL)
    while psutil.pid_exists(dead) and psutil.Process(dead).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    np.savez(jobs_dir / "data.npz", X=X, y=y)
    cold = client.wait_training_job(client.run_training_job("iris", f"file://{jobs_dir}/data.npz").id, timeout=120)
    assert cold.state == S.JOB_STATE_SUCCEEDED and "forked by warm trainer" not in job_log(scheduler, cold)
    reborn = wait_warm(trainers, "node-a")
    assert reborn != dead
    np.savez(jobs_dir / "data.npz", X=X, y=y)
    warm_again = client.wait_training_job(client.run_training_job("iris", f"file://{jobs_dir}/data.npz").id, 120)
    assert f"forked by warm trainer {reborn}" in job_log(scheduler, warm_again)

"""Training jobs: placed with the model's train resources, run as child processes that fit the
registered recipe, ended by the watcher; and the statuses bad requests get."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import redis
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from mlaas.export import register_sklearn
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.auth import MONITOR
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.jobs import JobStore
from tests.conftest import tiny_onnx

S = scheduler_pb2


@pytest.fixture
def scheduler(parts):
    started = parts.start()
    with SchedulerClient(f"127.0.0.1:{started.server.port}") as client:
        yield client, parts.settings.jobs_dir


def _npz(**arrays: np.ndarray) -> bytes:
    data = io.BytesIO()
    np.savez(data, **arrays)
    return data.getvalue()


def test_a_training_job_fits_the_recipe_and_holds_its_resources_while_it_runs(scheduler, iris_model):
    """A caller that shares no directory with the scheduler (the Monitor, a remote client) sends
    the data, reads the model back over gRPC and removes the job."""
    client, jobs_dir = scheduler
    _, X, y = iris_model
    job = client.run_training_job("iris", input_data=_npz(X=X, y=y))
    assert job.state == S.JOB_STATE_RUNNING and job.node == "node-a" and job.model.version == 1
    private = Path(job.output_uri.removeprefix("file://")).parent
    assert private.parent == jobs_dir and len(private.name) > 40 and private.stat().st_mode & 0o077 == 0
    assert job.resources.cpu_millicores == 1000  # iris has no train resources: the default
    busy = {n.name: n for n in client.nodes()}["node-a"]
    assert busy.allocated.cpu_millicores == 1000  # held while it runs
    with pytest.raises(FailedPrecondition, match="is RUNNING: only a succeeded job has an output"):
        client.training_job_output(job.id)
    done = client.wait_training_job(job.id, timeout=120)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.finished_at.seconds
    assert sorted(p.name for p in private.iterdir() if p.suffix != ".json") == ["model.onnx"]  # the data went
    session = onnxruntime.InferenceSession(client.training_job_output(job.id))
    labels = session.run(None, {session.get_inputs()[0].name: X})[0]
    assert np.mean(labels == y) > 0.9
    assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0
    with pytest.raises(FailedPrecondition, match="fitted no parameters: only a federated step does"):
        client.training_job_output(job.id, S.TRAINING_OUTPUT_PARAMETERS)
    with pytest.raises(FailedPrecondition, match="wrote no predictions: its input had no folds"):
        client.training_job_output(job.id, S.TRAINING_OUTPUT_PREDICTIONS)
    assert client.delete_training_job(job.id).state == S.JOB_STATE_SUCCEEDED
    assert not private.exists()
    with pytest.raises(NotFound, match=f"training job '{job.id}' not found"):
        client.training_job(job.id)


def test_an_output_is_what_the_job_wrote_and_a_deleted_job_stops_first(scheduler, iris_model):
    """A job's program writes in its own directory: a link it left in place of its model must
    not make the scheduler read out another file. A job deleted while it runs is stopped."""
    client, _ = scheduler
    _, X, y = iris_model
    job = client.wait_training_job(client.run_training_job("iris", input_data=_npz(X=X, y=y)).id, timeout=120)
    with pytest.raises(InvalidArgument, match="output must be TRAINING_OUTPUT_MODEL, TRAINING_OUTPUT_PARAMETERS or"):
        client.training_job_output(job.id, S.TRAINING_OUTPUT_UNSPECIFIED)
    model = Path(job.output_uri.removeprefix("file://"))
    model.unlink()
    model.symlink_to("/etc/passwd")
    with pytest.raises(NotFound, match="output is gone"):
        client.training_job_output(job.id)
    model.unlink()
    model.mkdir()  # nor anything but a regular file
    with pytest.raises(FailedPrecondition, match="output is not a regular file"):
        client.training_job_output(job.id)
    model.rmdir()
    with pytest.raises(NotFound, match="output is gone"):
        client.training_job_output(job.id)
    running = client.run_training_job("iris", input_data=_npz(X=X, y=y))
    deleted = client.delete_training_job(running.id)
    assert deleted.state == S.JOB_STATE_CANCELLED and deleted.reason == "deleted"
    assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0
    with pytest.raises(NotFound):
        client.training_job(running.id)
    with pytest.raises(InvalidArgument, match="input_uri or input_data, not both"):
        client.run_training_job("iris", "file:///x.npz", b"x")
    with pytest.raises(InvalidArgument, match="a training job needs its data"):
        client.run_training_job("iris")


def test_a_cross_validated_fit_predicts_each_fold_by_a_fit_without_it(scheduler, iris_model):
    """What a retraining round judges on (mlaas/retraining/rounds.py): with a `fold` per row, the
    job writes the model fitted on all rows and, for the rows with a fold, in order, the
    predictions of the fits on the other folds."""
    client, _ = scheduler
    _, X, y = iris_model
    fold = np.arange(len(y)) % 4
    fold[:30] = -1  # rows only to learn from
    job = client.run_training_job("iris", input_data=_npz(X=X, y=y, fold=fold))
    done = client.wait_training_job(job.id, timeout=120)
    predictions = np.load(io.BytesIO(client.training_job_output(done.id, S.TRAINING_OUTPUT_PREDICTIONS)))
    assert predictions.shape == (len(y) - 30,) and predictions.dtype == y.dtype
    assert 0.85 < np.mean(predictions == y[30:]) < 1.0  # out of sample: near, not at, the fit's own
    session = onnxruntime.InferenceSession(client.training_job_output(done.id))
    assert np.mean(session.run(None, {session.get_inputs()[0].name: X})[0] == y) > 0.9


@pytest.mark.parametrize(
    "fold, why",
    [
        (np.zeros(3, np.int64), r"fold must be one integer per row \(150\)"),
        (np.full(150, 0.5), "fold must be one integer per row"),
        (np.full(150, 64), "each fold must be -1 or from 0 to 63"),
        (np.full(150, -2), "each fold must be -1 or from 0 to 63"),
        (np.full(150, -1), "no row has a fold: nothing to predict"),
        (np.zeros(150, np.int64), "every row is in one fold: its fit would learn from no row"),
    ],
)
def test_a_fit_with_bad_folds_fails_and_says_why(scheduler, iris_model, fold, why):
    client, _ = scheduler
    _, X, y = iris_model
    job = client.run_training_job("iris", input_data=_npz(X=X, y=y, fold=fold))
    with pytest.raises(FailedPrecondition, match=f"exited with 2: .*{why}"):
        client.wait_training_job(job.id, timeout=120)


def test_a_job_that_fails_says_why(scheduler):
    client, jobs_dir = scheduler
    np.savez(jobs_dir / "no-labels.npz", X=np.zeros((5, 4), np.float32))
    job = client.run_training_job("iris", f"file://{jobs_dir}/no-labels.npz")
    with pytest.raises(FailedPrecondition, match=r"j-\w+ failed: exited with 2: .* must hold the arrays X"):
        client.wait_training_job(job.id, timeout=120)
    job = client.run_training_job("iris", input_data=_npz(X=np.zeros((5, 4), np.float32), y=np.zeros(4)))
    with pytest.raises(FailedPrecondition, match=r"exited with 2: .* X is \(5, 4\), y \(4,\)"):
        client.wait_training_job(job.id, timeout=120)


def test_bad_training_jobs_are_refused(scheduler, parts, tmp_path):
    client, jobs_dir = scheduler
    np.savez(jobs_dir / "data.npz", X=np.zeros((5, 4), np.float32), y=np.zeros(5))
    with RegistryClient(parts.registry_address) as registry:
        registry.register(tiny_onnx(), types_pb2.ModelDescription(name="no-recipe", task=types_pb2.TASK_REGRESSION))
        huge = types_pb2.Resources(cpu_millicores=64_000, memory_bytes=1 << 30)
        X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
        register_sklearn(registry, LogisticRegression().fit(X, X[:, 0] > 0), "greedy", X, train_resources=huge)
    good_in = f"file://{jobs_dir}/data.npz"
    (jobs_dir / "a-directory").mkdir()
    (jobs_dir / "a-link.npz").symlink_to(jobs_dir / "data.npz")
    (jobs_dir / "nested").mkdir()
    np.savez(jobs_dir / "nested" / "data.npz", X=np.zeros((5, 4), np.float32), y=np.zeros(5))
    np.savez(jobs_dir / "shared.npz", X=np.zeros((5, 4), np.float32), y=np.zeros(5))
    (jobs_dir / "hard-link.npz").hardlink_to(jobs_dir / "shared.npz")  # as if to another's file
    refused = (
        "../escape.npz",
        "missing.npz",
        "a-link.npz",
        "nested/data.npz",
        "nested/../data.npz",
        "/../../etc/passwd",
    )
    for uri in (f"file://{jobs_dir}/{name}" for name in refused):
        with pytest.raises(InvalidArgument, match="is not a file directly in your inputs directory"):
            client.run_training_job("iris", uri)
    for name in ("a-directory", "hard-link.npz"):
        with pytest.raises(InvalidArgument, match="must be a regular file with no other link to it"):
            client.run_training_job("iris", f"file://{jobs_dir}/{name}")
    with open(jobs_dir / "sparse.npz", "wb") as sparse:  # 2 GiB that cost the caller nothing
        sparse.truncate(2 << 30)
    with pytest.raises(InvalidArgument, match=r"is over 1073741824 bytes, the most a job's input may be"):
        client.run_training_job("iris", f"file://{jobs_dir}/sparse.npz")
    with pytest.raises(InvalidArgument, match="must be a file:// URI"):
        client.run_training_job("iris", "s3://bucket/data.npz")
    with pytest.raises(FailedPrecondition, match="no-recipe:1 has no training recipe"):
        client.run_training_job("no-recipe", good_in)
    with pytest.raises(ResourceExhausted, match="no node can run the training job now"):
        client.run_training_job("greedy", good_in)
    assert (jobs_dir / "data.npz").is_file()  # a refused job leaves the caller's file where it was
    left = ["a-directory", "a-link.npz", "data.npz", "hard-link.npz", "nested", "shared.npz", "sparse.npz"]
    assert sorted(p.name for p in jobs_dir.iterdir()) == left
    assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0  # nothing half-made
    with pytest.raises(NotFound, match="training job 'j-nope' not found"):
        client.wait_training_job("j-nope", timeout=1)


def test_under_auth_only_the_owner_or_the_monitor_trains_a_model(parts, identities, iris_model):
    """Beta may read alpha's public model, but not run training jobs on it; alpha's job is not
    beta's to see. A caller's input file is one in its own inputs directory: one another caller
    wrote is refused, and stays where it was."""
    scheduler = parts.start(server=identities.server())
    jobs_dir = parts.settings.jobs_dir
    address = f"127.0.0.1:{scheduler.server.port}"
    _, X, y = iris_model
    with RegistryClient(parts.registry_address) as registry:  # an open registry: iris is the anonymous tenant's
        register_sklearn(registry, LogisticRegression(max_iter=300).fit(X, y), "iris-x", X)
    alphas, monitors = (jobs_dir / "inputs" / who for who in ("alpha", MONITOR))
    for directory in (alphas, monitors):
        directory.mkdir(parents=True)
        np.savez(directory / "data.npz", X=X, y=y)
    with (
        SchedulerClient(address, identities.token("beta")) as beta,
        pytest.raises(PermissionDenied, match="only the owner of iris-x may train it"),
    ):
        beta.run_training_job("iris-x", f"file://{monitors}/data.npz")
    with SchedulerClient(address, identities.token(MONITOR)) as monitor:
        with pytest.raises(InvalidArgument, match=f"is not a file directly in your inputs directory {monitors}"):
            monitor.run_training_job("iris-x", f"file://{alphas}/data.npz")  # alpha's: not the monitor's to take
        assert (alphas / "data.npz").is_file()
        job = monitor.run_training_job("iris-x", f"file://{monitors}/data.npz")
        assert monitor.wait_training_job(job.id, timeout=120).state == S.JOB_STATE_SUCCEEDED
    with SchedulerClient(address, identities.token("beta")) as beta:
        for call in (lambda: beta.wait_training_job(job.id, timeout=1), lambda: beta.cancel_training_job(job.id),
                     lambda: beta.cancel_training_job("j-nope"), lambda: beta.training_job_output(job.id),
                     lambda: beta.delete_training_job(job.id)):  # fmt: skip
            with pytest.raises(NotFound, match="not found"):
                call()
    with SchedulerClient(address, identities.token(MONITOR)) as monitor:
        assert monitor.training_job_output(job.id)  # still there for its caller: beta removed nothing


def test_a_job_can_be_cancelled_and_one_past_its_deadline_is_stopped(parts, iris_model):
    """A runaway job once held a CPU until killed by hand: now its owner cancels it, and one
    still running at its deadline is stopped; either way its resources and its data go."""
    _, X, y = iris_model
    jobs_dir = parts.settings.jobs_dir
    scheduler = parts.start()
    hasty = parts.start(training_deadline_seconds=0.2)  # no iris job starts and fits that fast
    with (
        SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client,
        SchedulerClient(f"127.0.0.1:{hasty.server.port}") as hasty_client,
    ):
        np.savez(jobs_dir / "data.npz", X=X, y=y)
        job = client.run_training_job("iris", f"file://{jobs_dir}/data.npz")
        cancelled = client.cancel_training_job(job.id)
        assert cancelled.state == S.JOB_STATE_CANCELLED and "cancelled by" in cancelled.reason
        assert not Path(job.output_uri.removeprefix("file://")).parent.exists()  # its data is gone
        assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0
        with pytest.raises(FailedPrecondition, match="is CANCELLED"):
            client.cancel_training_job(job.id)

        np.savez(jobs_dir / "data.npz", X=X, y=y)
        late = hasty_client.run_training_job("iris", f"file://{jobs_dir}/data.npz")
        with pytest.raises(FailedPrecondition, match=r"did not finish within its deadline of 0\.2s"):
            client.wait_training_job(late.id, timeout=60)
        assert {n.name: n for n in client.nodes()}["node-a"].allocated.cpu_millicores == 0


def test_a_local_job_gets_no_more_memory_than_its_train_resources(scheduler, parts, iris_model):
    """A child process has no container: the local backend watches a job's resident memory and
    stops one above its model's train_resources.memory, with the reason, before it takes the
    node's memory from the replicas beside it."""
    client, jobs_dir = scheduler
    model, X, y = iris_model
    with RegistryClient(parts.registry_address) as registry:
        small = types_pb2.Resources(cpu_millicores=1000, memory_bytes=400 << 20)
        register_sklearn(registry, model, "iris-small-memory", X, train_resources=small)
    rows = np.random.default_rng(0).random((4_000_000, 10), dtype=np.float32)  # 160 MB, several copies to fit
    np.savez(jobs_dir / "big.npz", X=rows, y=(rows[:, 0] > 0.5).astype(np.int64))
    job = client.run_training_job("iris-small-memory", f"file://{jobs_dir}/big.npz")
    with pytest.raises(FailedPrecondition, match=r"exited with -9: .*resident, more than the job's 400Mi"):
        client.wait_training_job(job.id, timeout=120)
    np.savez(jobs_dir / "data.npz", X=X, y=y)  # what fits in it is fitted
    fits = client.run_training_job("iris-small-memory", f"file://{jobs_dir}/data.npz")
    assert client.wait_training_job(fits.id, timeout=120).state == S.JOB_STATE_SUCCEEDED


def test_the_mesh_shutting_down_stops_its_running_jobs(parts, iris_model):
    """A local job runs in a session of its own: when `mlaas up` stopped, jobs lived on with
    nobody left to stop them at their deadline."""
    import psutil

    _, X, y = iris_model
    jobs_dir = parts.settings.jobs_dir
    scheduler = parts.start()
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
        np.savez(jobs_dir / "data.npz", X=X, y=y)
        job = client.run_training_job("iris", f"file://{jobs_dir}/data.npz")
    scheduler.stop(0, stop_replicas=True)  # as MLAAS_STOP_REPLICAS_ON_EXIT does
    process = psutil.Process(int(job.handle)) if psutil.pid_exists(int(job.handle)) else None
    assert process is None or process.status() == psutil.STATUS_ZOMBIE


def test_the_jobs_directory_is_swept_of_what_nobody_will_read(parts):
    """A job's directory goes once its record has (the retention after the job ended): a
    succeeded job's model, which its caller was to read and remove, is not kept forever. Nothing
    else there is touched: MLAAS_JOBS_DIR may be pointed at a directory that holds more."""
    scheduler = parts.start(retention_seconds=60)
    jobs_dir = parts.settings.jobs_dir
    old = time.time() - 3_600
    forgotten, young = jobs_dir / f"j-{'0' * 12}-{'a' * 32}", jobs_dir / f"j-{'1' * 12}-{'b' * 32}"
    others = [jobs_dir / "artifacts", jobs_dir / "mesh.key", jobs_dir / "tenant-input.npz"]
    for directory in (forgotten, young, others[0]):
        directory.mkdir()
        (directory / "model.onnx").write_bytes(b"onnx")
    for path in others[1:]:
        path.write_bytes(b"bytes")
    for path in (forgotten, *others):
        os.utime(path, (old, old))
    scheduler.jobs.sweep(time.time())
    assert not forgotten.exists()
    assert (young / "model.onnx").is_file()  # just made: its record may be on its way
    assert all(path.exists() for path in others) and (others[0] / "model.onnx").is_file()


def test_a_job_placed_by_a_scheduler_that_stopped_before_starting_it_fails(parts):
    """A scheduler killed between placing a job and starting it left it RUNNING with no process,
    holding its resources until its owner deleted it."""
    scheduler = parts.start()
    placed = S.TrainingJob(
        id="j-0123456789ab",
        model=types_pb2.ModelRef(name="iris", version=1),
        state=S.JOB_STATE_RUNNING,
        node="node-a",
        resources=types_pb2.Resources(cpu_millicores=1000),
    )
    placed.stages.add(stage="placed").at.FromSeconds(int(time.time()) - 600)
    scheduler.job_store.put(placed)
    scheduler.jobs.check()
    job = scheduler.job_store.get(placed.id)
    assert job.state == S.JOB_STATE_FAILED and job.reason == "the scheduler stopped while it started the job"


def test_the_first_end_written_stands_whoever_writes_another(tmp_path):
    """Several scheduler processes watch the same jobs: one stopping a job past its deadline
    while another saw its process exit once left the caller "exited with -15" first and the
    deadline after it. The first end stands, and whoever writes another is told which."""
    embedded = EmbeddedRedis(tmp_path / "redis").start()
    try:
        store = JobStore(redis.Redis.from_url(embedded.url))
        job = S.TrainingJob(id="j-000000000001", state=S.JOB_STATE_RUNNING)
        store.put(job)
        deadline = S.TrainingJob(id=job.id, state=S.JOB_STATE_FAILED, reason="did not finish within its deadline")
        assert store.end(deadline) is deadline
        exited = S.TrainingJob(id=job.id, state=S.JOB_STATE_FAILED, reason="exited with -15")
        assert store.end(exited) == deadline
        assert store.get(job.id).reason == "did not finish within its deadline" and store.live() == []
    finally:
        embedded.stop()

"""Training jobs (retraining): placed like a one-replica deployment with the model's train
resources, run by the backend, and holding those resources until they end.

A job's files live in a private directory of its own under the jobs directory (`MLAAS_JOBS_DIR`,
shared with the Monitor), named with a secret nobody can guess: the caller writes its data
directly in the jobs directory, the scheduler moves it into the job's directory, and the job
writes its model there (the job record says where, to its owner only). So no caller can make a
job read another's data or overwrite another's model, nor the scheduler touch anything else.
`check`, every few tenths of a second, marks jobs SUCCEEDED (exit 0 and the model written) or
FAILED (with the job's last log lines).
"""

from __future__ import annotations

import secrets
import shutil
import stat
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import redis
from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.errors import InvalidArgument, NotFound, ResourceExhausted
from mlaas.refs import format_ref
from mlaas.services.auth import TRAINER, MeshKey
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends import Backend, JobSpec, ReplicaStatus
from scheduler_svc.placer import Placer

S = scheduler_pb2
PREFIX = "mlaas:job:"
INDEX = "mlaas:jobs"
# What a job gets when its model describes no train resources.
DEFAULT_TRAIN = types_pb2.Resources(cpu_millicores=1000, memory_bytes=1 << 30)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def take_input(jobs_dir: Path, uri: str, job_dir: Path) -> Path:
    """Moves the caller's input file into the job's private directory. It must be a regular file
    directly in `jobs_dir` (no link, no directory, nothing outside): the one place callers write."""
    if not uri.startswith("file://"):
        raise InvalidArgument(f"input_uri must be a file:// URI of a file in the jobs directory {jobs_dir}")
    path = Path(uri.removeprefix("file://"))
    try:
        regular = path.parent.resolve() == jobs_dir.resolve() and stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        regular = False
    if not regular:
        raise InvalidArgument(f"input_uri {uri} is not a file directly in the jobs directory {jobs_dir}")
    target = job_dir / "input.npz"
    path.rename(target)  # same directory tree: atomic, and the caller's name is gone
    return target


class JobStore:
    def __init__(self, client: redis.Redis, retention_seconds: float = 86_400.0):
        self._redis = client
        self._retention = max(1, int(retention_seconds))

    def put(self, job: scheduler_pb2.TrainingJob) -> None:
        """Kept while it runs, and for the retention once it ended."""
        ended = job.state != S.JOB_STATE_RUNNING
        pipe = self._redis.pipeline()
        pipe.set(PREFIX + job.id, job.SerializeToString(), ex=self._retention if ended else None)
        if ended:
            pipe.srem(INDEX, job.id)  # the index lists the running ones
        else:
            pipe.sadd(INDEX, job.id)
        pipe.execute()

    def get(self, job_id: str) -> scheduler_pb2.TrainingJob:
        raw = self._redis.get(PREFIX + job_id)
        if raw is None:
            raise NotFound(f"training job {job_id!r} not found")
        return scheduler_pb2.TrainingJob.FromString(raw)

    def running(self) -> list[scheduler_pb2.TrainingJob]:
        ids = [i.decode() for i in self._redis.smembers(INDEX)]
        raws = self._redis.mget([PREFIX + i for i in ids]) if ids else []
        jobs = [scheduler_pb2.TrainingJob.FromString(r) for r in raws if r is not None]
        return [j for j in jobs if j.state == S.JOB_STATE_RUNNING]

    def allocations(self) -> Iterable[tuple[str, types_pb2.Resources]]:
        """(node, resources) of every running job, for the placement's arithmetic."""
        return [(job.node, job.resources) for job in self.running()]


class TrainingJobs:
    def __init__(
        self,
        store: JobStore,
        placer: Placer,
        backend: Backend,
        jobs_dir: Path,
        key: MeshKey | None = None,
        deadline_seconds: float = 3600.0,
    ):
        self._key = key
        self._deadline = deadline_seconds
        self._store = store
        self._placer = placer
        self._backend = backend
        self.jobs_dir = jobs_dir
        jobs_dir.mkdir(parents=True, exist_ok=True)

    def run(self, model: types_pb2.ModelVersion, input_uri: str, tenant: str) -> scheduler_pb2.TrainingJob:
        job_id = f"j-{uuid.uuid4().hex[:12]}"
        # Private to the job: a name nobody can guess, readable and writable by its owner only.
        job_dir = self.jobs_dir / f"{job_id}-{secrets.token_hex(16)}"
        job_dir.mkdir(mode=0o700)
        try:
            input_path = take_input(self.jobs_dir, input_uri, job_dir)
        except Exception:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        output_path = job_dir / "model.onnx"
        resources = model.description.train_resources
        if not (resources.cpu_millicores or resources.memory_bytes):
            resources = DEFAULT_TRAIN
        job = S.TrainingJob(
            id=job_id,
            model=types_pb2.ModelRef(name=model.description.name, version=model.version),
            input_uri=f"file://{input_path}", output_uri=f"file://{output_path}", resources=resources, tenant=tenant,
            state=S.JOB_STATE_RUNNING, created_at=_now(),
        )  # fmt: skip
        job.deadline.FromNanoseconds(job.created_at.ToNanoseconds() + int(self._deadline * 1e9))
        sizing = S.Deployment(resources=resources, mode=S.PLACEMENT_MODE_OPEN, replicas=1)

        def record(nodes: tuple[str, ...]) -> scheduler_pb2.TrainingJob:
            job.node = nodes[0]
            self._store.put(job)  # under the placement lock: its resources count from now on
            return job

        placement, placed = self._placer.place(sizing, 1, record)
        if placed is None:  # refused: the caller's file goes back where it was
            input_path.rename(input_uri.removeprefix("file://"))
            shutil.rmtree(job_dir, ignore_errors=True)
            raise ResourceExhausted(f"no node can run the training job now: {placement.reason}")
        spec = JobSpec(
            job.id, job.node, format_ref(job.model), str(input_path), str(output_path),
            resources.cpu_millicores, resources.memory_bytes,
            self._key.mint(TRAINER, job.id, format_ref(job.model)) if self._key else "",
        )  # fmt: skip
        try:
            started = self._backend.start_job(spec)
        except Exception as err:
            self._finish(job, S.JOB_STATE_FAILED, f"the backend could not start it: {err}")
            raise
        job.handle = started.handle
        self._store.put(job)
        return job

    def cancel(self, job: scheduler_pb2.TrainingJob, reason: str) -> scheduler_pb2.TrainingJob:
        return self._stop(job, S.JOB_STATE_CANCELLED, reason)

    def _stop(self, job: scheduler_pb2.TrainingJob, state: int, reason: str) -> scheduler_pb2.TrainingJob:
        """Stops a running job: its process goes, its resources are free, its data is removed."""
        if job.handle:
            self._backend.delete(ReplicaStatus(job.id, "", True, handle=job.handle), grace_seconds=5)
        self._finish(job, state, reason)
        return job

    def check(self) -> None:
        """Ends the jobs whose process has exited, and stops those past their deadline."""
        now = time.time()
        for job in self._store.running():
            if not job.handle:  # placed, its process not started yet
                continue
            status = self._backend.status(ReplicaStatus(job.id, "", True, handle=job.handle))
            if status.running and job.HasField("deadline") and now > job.deadline.ToNanoseconds() / 1e9:
                allowed = (job.deadline.ToNanoseconds() - job.created_at.ToNanoseconds()) / 1e9
                self._stop(job, S.JOB_STATE_FAILED, f"did not finish within its deadline of {allowed:g}s")
                continue
            if status.running:
                continue
            output = Path(job.output_uri.removeprefix("file://"))
            # A job started by another scheduler process has no exit code here: its output decides.
            if status.exit_code in (0, None) and output.is_file():
                self._finish(job, S.JOB_STATE_SUCCEEDED, "")
            else:
                logs = self._backend.logs(status, lines=8)
                self._finish(job, S.JOB_STATE_FAILED, f"exited with {status.exit_code}: {logs}"[-800:])
            self._backend.delete(status)  # its container or process; what it said is in the record

    def _finish(self, job: scheduler_pb2.TrainingJob, state: int, reason: str) -> None:
        job.state, job.reason = state, reason
        job.finished_at.CopyFrom(_now())
        self._store.put(job)
        private = Path(job.output_uri.removeprefix("file://")).parent
        if state != S.JOB_STATE_SUCCEEDED and job.output_uri and private.parent == self.jobs_dir:
            shutil.rmtree(private, ignore_errors=True)  # nobody will read its model: its data goes now

"""Training jobs (retraining): placed like a one-replica deployment with the model's train
resources, run by the backend, and holding those resources until they end.

A job's files live under the jobs directory (`MLAAS_JOBS_DIR`, shared with the Monitor, which
writes the labeled data there and reads the model back); a path outside it is refused, so a
caller cannot make the scheduler read or write anything else. `check`, every few tenths of a
second, marks jobs
SUCCEEDED (exit 0 and the model written) or FAILED (with the job's last log lines).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import redis
from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.errors import InvalidArgument, NotFound, ResourceExhausted
from mlaas.refs import format_ref
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


def job_path(jobs_dir: Path, uri: str, field: str) -> Path:
    """The file a file:// URI names, which must be inside `jobs_dir`."""
    if not uri.startswith("file://"):
        raise InvalidArgument(f"{field} must be a file:// URI inside the jobs directory {jobs_dir}")
    path = Path(uri.removeprefix("file://")).resolve()
    if not path.is_relative_to(jobs_dir.resolve()):
        raise InvalidArgument(f"{field} {uri} is outside the jobs directory {jobs_dir}")
    return path


class JobStore:
    def __init__(self, client: redis.Redis):
        self._redis = client

    def put(self, job: scheduler_pb2.TrainingJob) -> None:
        pipe = self._redis.pipeline()
        pipe.set(PREFIX + job.id, job.SerializeToString())
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
    def __init__(self, store: JobStore, placer: Placer, backend: Backend, jobs_dir: Path):
        self._store = store
        self._placer = placer
        self._backend = backend
        self.jobs_dir = jobs_dir
        jobs_dir.mkdir(parents=True, exist_ok=True)

    def run(self, model: types_pb2.ModelVersion, input_uri: str, output_uri: str, tenant: str):
        input_path = job_path(self.jobs_dir, input_uri, "input_uri")
        output_path = job_path(self.jobs_dir, output_uri, "output_uri")
        if not input_path.is_file():
            raise InvalidArgument(f"input_uri {input_uri} does not exist")
        resources = model.description.train_resources
        if not (resources.cpu_millicores or resources.memory_bytes):
            resources = DEFAULT_TRAIN
        job = S.TrainingJob(
            id=f"j-{uuid.uuid4().hex[:12]}",
            model=types_pb2.ModelRef(name=model.description.name, version=model.version),
            input_uri=input_uri, output_uri=output_uri, resources=resources, tenant=tenant,
            state=S.JOB_STATE_RUNNING, created_at=_now(),
        )  # fmt: skip
        sizing = S.Deployment(resources=resources, mode=S.PLACEMENT_MODE_OPEN, replicas=1)

        def record(nodes: tuple[str, ...]) -> scheduler_pb2.TrainingJob:
            job.node = nodes[0]
            self._store.put(job)  # under the placement lock: its resources count from now on
            return job

        placement, placed = self._placer.place(sizing, 1, record)
        if placed is None:
            raise ResourceExhausted(f"no node can run the training job now: {placement.reason}")
        spec = JobSpec(
            job.id, job.node, format_ref(job.model), str(input_path), str(output_path),
            resources.cpu_millicores, resources.memory_bytes,
        )  # fmt: skip
        try:
            started = self._backend.start_job(spec)
        except Exception as err:
            self._finish(job, S.JOB_STATE_FAILED, f"the backend could not start it: {err}")
            raise
        job.handle = started.handle
        self._store.put(job)
        return job

    def check(self) -> None:
        """Ends the jobs whose process has exited."""
        for job in self._store.running():
            if not job.handle:  # placed, its process not started yet
                continue
            status = self._backend.status(ReplicaStatus(job.id, "", True, handle=job.handle))
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

"""Training jobs (retraining): placed like a one-replica deployment with the model's train
resources, run by the backend, and holding those resources until they end.

A job's files live in a private directory of its own under the jobs directory (`MLAAS_JOBS_DIR`),
named with a secret nobody can guess: the caller sends its data with the request (or writes it
in its inputs directory, which the scheduler moves it from), the scheduler writes it into the
job's directory, and the job writes its model there, which its owner reads back over gRPC
(ReadTrainingJobOutput) and removes (DeleteTrainingJob) or leaves for the retention. So no
caller can make a job read another's data or overwrite another's model, nor the scheduler touch
anything else.
A round on a STRICT deployment's node (NodeRound) has no input file: the scheduler writes the
round's plan in the job's directory and the job reads the data its node keeps. It is placed on
that node only, and when the node has no room it waits there (PENDING, with the reason) until it
has. It writes its verdict and counts (RoundResult, JSON) beside the model, which the scheduler
puts in the job record.

`check`, every tenth of a second, starts the pending jobs that fit now and marks jobs
SUCCEEDED (exit 0 and their output written) or FAILED (with the job's last log lines).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import redis
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from mlaas.refs import format_ref, job_state_name
from mlaas.retraining.round_files import (
    CANDIDATE,
    FAILURE_NOTE,
    PARAMETERS,
    PREDICTIONS,
    ROUND_PLAN,
    ROUND_RESULT,
    STAGES,
)
from mlaas.retraining.stages import read_stages, stage_time
from mlaas.services.auth import TRAINER, MeshKey
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends import Backend, JobSpec, ReplicaStatus
from scheduler_svc.inputs import JobInput
from scheduler_svc.placer import Placer
from scheduler_svc.replies import text

S = scheduler_pb2
PREFIX = "mlaas:job:"
INDEX = "mlaas:jobs"
ROUND_HOLD = "mlaas:round:"  # + deployment id -> the job that is its one live round
# Deletes a hold only if the given job has it (a hold that expired may be another job's now).
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# What a job gets when its model describes no train resources.
DEFAULT_TRAIN = types_pb2.Resources(cpu_millicores=1000, memory_bytes=1 << 30)
LIVE = (S.JOB_STATE_RUNNING, S.JOB_STATE_PENDING)
MAX_RESULT_BYTES = 64 << 10  # counts, two scores and a sentence
MAX_NOTE_BYTES = 1 << 10
# What a round on a node needs on top of its model's train resources (a fit's): ONNX Runtime to
# judge, and for a private fit diffprivlib's Python beside the job's.
ROUND_MEMORY, PRIVATE_FIT_MEMORY = 256 << 20, 384 << 20
ENDED = "ended meanwhile"  # a pending job cancelled while it was being placed
SWEEP_SECONDS = 60.0
JOB_DIRECTORY = re.compile(r"j-[0-9a-f]{12}-[0-9a-f]{32}")
CHUNK_BYTES = 1 << 20  # of an output read back
START_GRACE_SECONDS = 120.0  # from placed to started, however busy the machine (a few seconds at most)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def check_node_round(plan: scheduler_pb2.NodeRound) -> None:
    """InvalidArgument for a round that makes no sense."""
    if not plan.deployment_id:
        raise InvalidArgument("node_round.deployment_id is required")
    if not 0 < plan.confidence < 1:
        raise InvalidArgument(f"node_round.confidence must be between 0 and 1 (exclusive); got {plan.confidence}")
    if not (math.isfinite(plan.epsilon) and plan.epsilon >= 0):
        raise InvalidArgument(f"node_round.epsilon must be 0 (no privacy) or a positive number; got {plan.epsilon}")
    if plan.since_label < 0 or plan.unseen_after < 0 or plan.until_label < 0:
        raise InvalidArgument("node_round.since_label, unseen_after and until_label are label numbers, 0 or more")
    if plan.parameters_only and plan.judge_candidate:
        raise InvalidArgument("a federated step either fits parameters or judges a candidate, not both")
    if plan.epsilon and (plan.parameters_only or plan.judge_candidate):
        raise InvalidArgument("federated rounds with differential privacy are not supported yet")


class JobStore:
    def __init__(self, client: redis.Redis, retention_seconds: float = 86_400.0):
        self._redis = client
        self._retention = max(1, int(retention_seconds))

    def put(self, job: scheduler_pb2.TrainingJob) -> None:
        """Kept while it runs or waits, and for the retention once it ended."""
        ended = job.state not in LIVE
        pipe = self._redis.pipeline()
        pipe.set(PREFIX + job.id, job.SerializeToString(), ex=self._retention if ended else None)
        if ended:
            pipe.srem(INDEX, job.id)  # the index lists the running and pending ones
        else:
            pipe.sadd(INDEX, job.id)
        pipe.execute()

    @property
    def retention(self) -> int:
        return self._retention

    def exists(self, job_id: str) -> bool:
        return bool(self._redis.exists(PREFIX + job_id))

    def delete(self, job_id: str) -> None:
        pipe = self._redis.pipeline()
        pipe.delete(PREFIX + job_id)
        pipe.srem(INDEX, job_id)
        pipe.execute()

    def get(self, job_id: str) -> scheduler_pb2.TrainingJob:
        raw = self._redis.get(PREFIX + job_id)
        if raw is None:
            raise NotFound(f"training job {job_id!r} not found")
        return scheduler_pb2.TrainingJob.FromString(raw)

    def put_if(self, job: scheduler_pb2.TrainingJob, stored_state: int) -> bool:
        """Writes a job that is new or still in `stored_state` in the store; False (nothing
        written) once it moved on meanwhile, say cancelled while the watcher placed or started it."""
        key = PREFIX + job.id
        with self._redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is not None and scheduler_pb2.TrainingJob.FromString(raw).state != stored_state:
                    return False
                pipe.multi()
                pipe.set(key, job.SerializeToString())
                pipe.sadd(INDEX, job.id)
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def end(self, job: scheduler_pb2.TrainingJob) -> scheduler_pb2.TrainingJob:
        """Writes an ended job unless it ended already (several scheduler processes watch the
        same jobs: the first end written stands). Returns the job as stored."""
        key = PREFIX + job.id
        while True:
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is not None and (stored := scheduler_pb2.TrainingJob.FromString(raw)).state not in LIVE:
                        return stored
                    pipe.multi()
                    pipe.set(key, job.SerializeToString(), ex=self._retention)
                    pipe.srem(INDEX, job.id)
                    pipe.execute()
                    return job
                except redis.WatchError:
                    continue  # written meanwhile (a stage, or an end): read it again

    def live(self) -> list[scheduler_pb2.TrainingJob]:
        """Running and pending jobs, oldest first."""
        ids = [text(i) for i in self._redis.smembers(INDEX)]
        raws = self._redis.mget([PREFIX + i for i in ids]) if ids else []
        jobs = [scheduler_pb2.TrainingJob.FromString(r) for r in raws if r is not None]
        return sorted((j for j in jobs if j.state in LIVE), key=lambda j: j.created_at.ToNanoseconds())

    def running(self) -> list[scheduler_pb2.TrainingJob]:
        return [j for j in self.live() if j.state == S.JOB_STATE_RUNNING]

    def hold_round(self, deployment_id: str, job_id: str, seconds: float) -> str:
        """'' once `job_id` is the deployment's one live round (held `seconds` at most, should its
        scheduler die); otherwise the job that is."""
        key = ROUND_HOLD + deployment_id
        if self._redis.set(key, job_id, nx=True, ex=max(1, int(seconds))):
            return ""
        holder = self._redis.get(key)
        return text(holder) if holder else "another round, just ended"

    def release_round(self, deployment_id: str, job_id: str) -> None:
        self._redis.eval(RELEASE, 1, ROUND_HOLD + deployment_id, job_id)

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
        max_input_bytes: int = 1 << 30,
    ):
        self._key = key
        self._deadline = deadline_seconds
        self._max_input_bytes = max_input_bytes
        self._store = store
        self._placer = placer
        self._backend = backend
        self.jobs_dir = jobs_dir
        jobs_dir.mkdir(parents=True, exist_ok=True)
        self._swept = 0.0

    def run(
        self, model: types_pb2.ModelVersion, given: JobInput, tenant: str,
        node_round: scheduler_pb2.NodeRound | None = None, node: str = "",
    ) -> scheduler_pb2.TrainingJob:  # fmt: skip
        """Places and starts a job fitting `model`'s recipe on the caller's data, or, with
        `node_round`, a round on `node` from the data kept there (PENDING while it has no room)."""
        job_id = f"j-{uuid.uuid4().hex[:12]}"
        if node_round is not None and (
            holder := self._store.hold_round(node_round.deployment_id, job_id, self._deadline + 60)
        ):
            raise FailedPrecondition(
                f"deployment {node_round.deployment_id} has a round on its node already ({holder}): one at a time"
            )
        try:
            return self._create(model, given, tenant, node_round, node, job_id)
        except Exception:  # the hold goes with the job (a job that got as far as its end let it go already)
            if node_round is not None:
                self._store.release_round(node_round.deployment_id, job_id)
            raise

    def _create(
        self, model: types_pb2.ModelVersion, given: JobInput, tenant: str,
        node_round: scheduler_pb2.NodeRound | None, node: str, job_id: str,
    ) -> scheduler_pb2.TrainingJob:  # fmt: skip
        # Private to the job: a name nobody can guess, readable and writable by its owner only.
        job_dir = self.jobs_dir / f"{job_id}-{secrets.token_hex(16)}"
        job_dir.mkdir(mode=0o700)
        remove_callers_file = None
        try:
            if node_round is None:
                input_path = job_dir / "input.npz"
                remove_callers_file = given.take(self.jobs_dir, input_path, tenant, self._max_input_bytes)
            else:
                if node_round.judge_candidate:  # the model a federated round's sites judge
                    remove_callers_file = given.take(self.jobs_dir, job_dir / CANDIDATE, tenant, self._max_input_bytes)
                input_path = job_dir / ROUND_PLAN
                input_path.write_text(json_format.MessageToJson(node_round))
        except Exception:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        resources = types_pb2.Resources()
        resources.CopyFrom(model.description.train_resources)
        if not (resources.cpu_millicores or resources.memory_bytes):
            resources.CopyFrom(DEFAULT_TRAIN)
        if node_round is not None:  # it runs both models with ONNX Runtime besides the fit
            resources.memory_bytes += ROUND_MEMORY + (PRIVATE_FIT_MEMORY if node_round.epsilon else 0)
        job = S.TrainingJob(
            id=job_id,
            model=types_pb2.ModelRef(name=model.description.name, version=model.version),
            input_uri=f"file://{input_path}" if node_round is None else "",
            output_uri=f"file://{job_dir / 'model.onnx'}", resources=resources, tenant=tenant,
            state=S.JOB_STATE_PENDING, created_at=_now(), node_round=node_round, node=node,
        )  # fmt: skip
        job.deadline.FromNanoseconds(job.created_at.ToNanoseconds() + int(self._deadline * 1e9))
        refused = self._place(job)
        if refused and node_round is None:  # the caller's file stays where it was
            shutil.rmtree(job_dir, ignore_errors=True)
            raise ResourceExhausted(f"no node can run the training job now: {refused}")
        if remove_callers_file is not None:
            remove_callers_file()
        if refused:  # a round waits for its node
            job.reason = refused
            self._store.put(job)
            return job
        self._start(job)
        return job

    def _place(self, job: scheduler_pb2.TrainingJob) -> str:
        """'' once the job holds its resources on a node (its own node, if it names one), stored
        RUNNING under the placement lock; otherwise why it cannot now."""
        mode = S.PLACEMENT_MODE_STRICT if job.node else S.PLACEMENT_MODE_OPEN
        sizing = S.Deployment(resources=job.resources, mode=mode, node=job.node, replicas=1)

        def record(nodes: tuple[str, ...]) -> scheduler_pb2.TrainingJob | None:
            running = S.TrainingJob()
            running.CopyFrom(job)
            running.node, running.state, running.reason = nodes[0], S.JOB_STATE_RUNNING, ""
            running.stages.append(stage_time("placed"))
            # under the placement lock: its resources count from now on; unless it was cancelled
            if not self._store.put_if(running, S.JOB_STATE_PENDING):
                return None
            job.CopyFrom(running)
            return job

        placement, placed = self._placer.place(sizing, 1, record)
        if placed is not None:
            return ""
        return ENDED if placement.placed else placement.reason

    def _start(self, job: scheduler_pb2.TrainingJob) -> None:
        private = Path(job.output_uri.removeprefix("file://")).parent
        node_store = self._backend.node_store(job.node_round.deployment_id) if job.HasField("node_round") else None
        spec = JobSpec(
            job.id, job.node, format_ref(job.model),
            str(private / ROUND_PLAN) if node_store else job.input_uri.removeprefix("file://"),
            str(private / "model.onnx"), job.resources.cpu_millicores, job.resources.memory_bytes,
            self._key.mint(TRAINER, job.id, format_ref(job.model), seconds=self._deadline + 60) if self._key else "",
            node_store=node_store or "", result_path=str(private / ROUND_RESULT) if node_store else "",
        )  # fmt: skip
        asked = stage_time("started")  # before the job runs: a forked one notes its own stages at once
        try:
            started = self._backend.start_job(spec)
        except Exception as err:
            self._finish(job, S.JOB_STATE_FAILED, f"the backend could not start it: {err}")
            raise
        job.handle = started.handle
        job.stages.append(asked)
        if not self._store.put_if(job, S.JOB_STATE_RUNNING):  # cancelled while it started: it goes
            self._backend.delete(ReplicaStatus(job.id, "", True, handle=job.handle), grace_seconds=5)

    def node_store(self, deployment_id: str) -> str | None:
        return self._backend.node_store(deployment_id)

    def cancel(self, job: scheduler_pb2.TrainingJob, reason: str) -> scheduler_pb2.TrainingJob:
        return self._stop(job, S.JOB_STATE_CANCELLED, reason)

    def output(self, job: scheduler_pb2.TrainingJob, which: int) -> Iterator[bytes]:
        """The bytes of what a SUCCEEDED job wrote (S.TrainingOutput), in chunks."""
        if job.state != S.JOB_STATE_SUCCEEDED:
            state = job_state_name(job.state)
            raise FailedPrecondition(f"training job {job.id} is {state}: only a succeeded job has an output")
        model = Path(job.output_uri.removeprefix("file://"))
        plan = job.node_round if job.HasField("node_round") else None
        if which == S.TRAINING_OUTPUT_PARAMETERS:
            if plan is None or not plan.parameters_only:
                raise FailedPrecondition(f"training job {job.id} fitted no parameters: only a federated step does")
            path = model.with_name(PARAMETERS)
        elif which == S.TRAINING_OUTPUT_PREDICTIONS:
            if plan is not None:
                raise FailedPrecondition(f"training job {job.id} is a node round: its predictions stay on its node")
            path = model.with_name(PREDICTIONS)
            if model.is_file() and not path.exists():
                raise FailedPrecondition(f"training job {job.id} wrote no predictions: its input had no folds")
        elif which == S.TRAINING_OUTPUT_MODEL:
            if plan is not None and (plan.parameters_only or plan.judge_candidate or not job.round_result.better):
                raise FailedPrecondition(f"training job {job.id} wrote no model: {job.round_result.reason or 'a step'}")
            path = model
        else:
            raise InvalidArgument(
                "output must be TRAINING_OUTPUT_MODEL, TRAINING_OUTPUT_PARAMETERS or TRAINING_OUTPUT_PREDICTIONS"
            )
        try:  # what the job wrote, never a link it may have left in its place
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            raise NotFound(f"training job {job.id}'s output is gone (deleted, or past the retention)") from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise FailedPrecondition(f"training job {job.id}'s output is not a regular file")
        with os.fdopen(descriptor, "rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk

    def remove(self, job: scheduler_pb2.TrainingJob) -> scheduler_pb2.TrainingJob:
        """A job and its files go now (a live one is stopped first)."""
        if job.state in LIVE:
            self._stop(job, S.JOB_STATE_CANCELLED, "deleted")
        self._store.delete(job.id)
        if (private := self._private_dir(job)) is not None:
            shutil.rmtree(private, ignore_errors=True)
        return job

    def _private_dir(self, job: scheduler_pb2.TrainingJob) -> Path | None:
        """The job's own directory, if it has one directly in the jobs directory: the only place
        whose files the scheduler removes."""
        private = Path(job.output_uri.removeprefix("file://")).parent
        return private if job.output_uri and private.parent == self.jobs_dir else None

    def _stop(self, job: scheduler_pb2.TrainingJob, state: S.JobState, reason: str) -> scheduler_pb2.TrainingJob:
        """Stops a running job: its end is written first (another scheduler process, seeing its
        process go, would write "exited with -15" instead), then its process and its data go.
        Returns the job as stored (ended otherwise meanwhile, that end)."""
        ended = self._finish(job, state, reason, remove_files=False)
        if job.handle:
            self._backend.delete(ReplicaStatus(job.id, "", True, handle=job.handle), grace_seconds=5)
        if ended is job:
            self._remove_files(job)
        return ended

    def check(self) -> None:
        """Starts the pending jobs that fit now, ends the jobs whose process has exited, and
        stops those past their deadline; now and then, sweeps the jobs directory."""
        now = time.time()
        if now - self._swept > SWEEP_SECONDS:
            self._swept = now
            self.sweep(now)
        for job in self._store.live():
            past_deadline = job.HasField("deadline") and now > job.deadline.ToNanoseconds() / 1e9
            allowed = (job.deadline.ToNanoseconds() - job.created_at.ToNanoseconds()) / 1e9
            if job.state == S.JOB_STATE_PENDING:
                self._try_pending(job, past_deadline, allowed)
                continue
            if not job.handle:  # placed, its process not started yet
                if self._never_started(job, now):
                    self._finish(job, S.JOB_STATE_FAILED, "the scheduler stopped while it started the job")
                continue
            status = self._backend.status(
                ReplicaStatus(job.id, "", True, handle=job.handle, memory_bytes=job.resources.memory_bytes)
            )
            if status.running and past_deadline:
                self._stop(job, S.JOB_STATE_FAILED, f"did not finish within its deadline of {allowed:g}s")
                continue
            if status.running:
                continue
            # A job started by another scheduler process has no exit code here: its output decides.
            problem = self._read_output(job) if status.exit_code in (0, None) else ""
            if status.exit_code in (0, None) and not problem:
                self._finish(job, S.JOB_STATE_SUCCEEDED, "")
            else:
                ended = "ended" if status.exit_code is None else f"exited with {status.exit_code}"
                why = ended + (f" but {problem}" if problem else "")
                self._finish(job, S.JOB_STATE_FAILED, f"{why}: {self._failure(job, status)}"[-800:])
            self._backend.delete(status)  # its container or process; what it said is in the record

    def sweep(self, now: float) -> None:
        """Removes what nobody will read any more, and nothing else of what the jobs directory may
        hold: a job's directory once its record is gone (the retention after it ended: a
        succeeded job's model stays for its caller until then)."""
        for path in self.jobs_dir.iterdir():
            try:
                if now - path.lstat().st_mtime < self._store.retention:
                    continue  # a directory just made, its record not written yet, is young too
                ours = JOB_DIRECTORY.fullmatch(path.name) and path.is_dir() and not path.is_symlink()
                if ours and not self._store.exists(path.name[: len("j-") + 12]):
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue

    def _try_pending(self, job: scheduler_pb2.TrainingJob, past_deadline: bool, allowed: float) -> None:
        if past_deadline:
            self._finish(job, S.JOB_STATE_FAILED, f"waited {allowed:g}s for room on node {job.node}: {job.reason}")
            return
        refused = self._place(job)
        if not refused:
            with contextlib.suppress(Exception):  # FAILED with the backend's reason; the others go on
                self._start(job)
        elif refused != ENDED and refused != job.reason:
            job.reason = refused
            self._store.put_if(job, S.JOB_STATE_PENDING)

    def _failure(self, job: scheduler_pb2.TrainingJob, status: ReplicaStatus) -> str:
        """What a failed job said: its last log lines, except for a round on a STRICT node, whose
        log may quote the node's data (an exception naming a label): then only the note the job
        wrote for the mesh, and its log stays on the node."""
        if not job.HasField("node_round"):
            return self._backend.logs(status, lines=8)
        note = Path(job.output_uri.removeprefix("file://")).with_name(FAILURE_NOTE)
        try:
            with open(note, "rb") as file:
                return file.read(MAX_NOTE_BYTES).decode(errors="replace").strip()
        except OSError:
            killed = (
                "killed: over its train_resources.memory, or stopped by the operator; "
                if status.exit_code == -9
                else ""
            )
            return f"{killed}its log stays on node {job.node}"

    def _read_output(self, job: scheduler_pb2.TrainingJob) -> str:
        """'' when the job left what it owes (its model; a round its result, and its model if the
        challenger won), the result read into the record; otherwise what is missing."""
        model = Path(job.output_uri.removeprefix("file://"))
        if not job.HasField("node_round"):
            return "" if model.is_file() else "no model written"
        result_path = model.with_name(ROUND_RESULT)
        try:
            with open(result_path, "rb") as file:
                raw = file.read(MAX_RESULT_BYTES + 1)
            if len(raw) > MAX_RESULT_BYTES:
                return f"its result is over {MAX_RESULT_BYTES} bytes"
            job.round_result.CopyFrom(json_format.Parse(raw, S.RoundResult()))
        except (OSError, json_format.ParseError) as err:
            return f"no readable round result: {err}"
        plan = job.node_round
        if plan.parameters_only:  # the scheduler says where they are; the job's word is not taken
            parameters = model.with_name(PARAMETERS)
            if not parameters.is_file():
                return "no parameters written"
            job.round_result.parameters_uri = f"file://{parameters}"
        elif job.round_result.better and not (plan.judge_candidate or model.is_file()):
            return "the challenger won but no model was written"
        return ""

    def _finish(
        self, job: scheduler_pb2.TrainingJob, state: S.JobState, reason: str, remove_files: bool = True
    ) -> scheduler_pb2.TrainingJob:
        """Ends the job with `reason` unless another scheduler process ended it first; returns it
        as stored (the same object when this end was written)."""
        job.state, job.reason = state, reason
        job.finished_at.CopyFrom(_now())
        if job.output_uri:  # what the job's program noted of its own stages
            job.stages.extend(read_stages(Path(job.output_uri.removeprefix("file://")).with_name(STAGES)))
        job.stages.append(stage_time("ended"))
        stored = self._store.end(job)
        if stored is not job:
            return stored
        if job.HasField("node_round"):
            self._store.release_round(job.node_round.deployment_id, job.id)
        if remove_files:
            self._remove_files(job)
        return job

    def _remove_files(self, job: scheduler_pb2.TrainingJob) -> None:
        """What an ended job leaves: a failed one's data, a succeeded one's input (its model stays
        for its caller)."""
        private = self._private_dir(job)
        if private is None:
            return
        if job.state != S.JOB_STATE_SUCCEEDED:
            shutil.rmtree(private, ignore_errors=True)  # nobody will read its model: its data goes now
            return
        for given in (job.input_uri.removeprefix("file://"), private / CANDIDATE):  # the caller's data goes now
            if given:
                Path(given).unlink(missing_ok=True)

    def _never_started(self, job: scheduler_pb2.TrainingJob, now: float) -> bool:
        """A job placed by a scheduler process that stopped before it started it: nothing ever will."""
        placed = next((s.at.ToNanoseconds() / 1e9 for s in job.stages if s.stage == "placed"), now)
        return now - placed > START_GRACE_SECONDS

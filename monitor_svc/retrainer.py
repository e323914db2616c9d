"""Runs retrainings one at a time on a thread of their own, so that no rpc waits for a fit.

A retraining: the labeled samples since the change (from the store) -> the registered recipe
fitted on most of them, as a training job the scheduler places with the model's train resources
(RunTrainingJob; data and model pass through the shared jobs directory) -> challenger and
champion (the version serving now) scored on the held-out rest -> if a paired test says the
challenger is better at the policy's confidence: a second job fits all of them, the model is registered
with its lineage and the training window as its reference data, the deployment rolls to it (the
scheduler's UpdateDeployment) and the `champion` alias moves. Every step is a state of the
Retraining record, watched by WatchRetraining; the job's `done` learns the outcome (the
deployment's RetrainSchedule plans the next round from it).
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.services.label_store import Labeled
from mlaas.v1 import monitor_pb2, types_pb2
from monitor_svc.changes import Changes
from monitor_svc.context import first_output
from monitor_svc.monitoring import ModelContext
from monitor_svc.retraining import holdout_split, judge, metric_name
from monitor_svc.store import MonitorStore

log = logging.getLogger(__name__)
M = monitor_pb2
CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class Job:
    deployment_id: str
    context: ModelContext  # of the champion: the version the deployment serves
    trigger_event_id: str
    since_label: int  # matched-label number after which the data starts
    unseen_after: int  # the champion learnt from no label after this one: they judge it
    confidence: float  # of the paired test the challenger must pass
    follow_up: bool = False  # the champion came from an earlier round of the same series (judge)
    done: Callable[[bool], None] = lambda rolled_out: None  # told whether it rolled out


def _stamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def targets(labels: list[str], classification: bool) -> np.ndarray:
    """Labels as the model's outputs are typed: integers when every class label is one."""
    if not classification:
        return np.array([float(v) for v in labels])
    try:
        return np.array([int(v) for v in labels], dtype=np.int64)
    except ValueError:
        return np.array(labels)


class Retrainer(threading.Thread):
    def __init__(
        self,
        store: MonitorStore,
        registry_address: str,
        scheduler_address: str,
        jobs_dir: Path,
        changes: Changes,
        token: str | None = None,
    ):
        super().__init__(name="retrainer", daemon=True)
        self._store = store
        self._registry = registry_address
        self._scheduler = scheduler_address
        self._jobs_dir = jobs_dir
        jobs_dir.mkdir(parents=True, exist_ok=True)
        self._changes = changes
        self._token = token
        self._jobs: queue.Queue[tuple[Job, monitor_pb2.Retraining] | None] = queue.Queue()

    def submit(self, job: Job) -> monitor_pb2.Retraining:
        record = M.Retraining(
            id=f"r-{uuid.uuid4().hex[:12]}",
            deployment_id=job.deployment_id,
            trigger_event_id=job.trigger_event_id,
            parent_version=job.context.version,
            state=M.RETRAINING_STATE_PENDING,
            started_at=_stamp(),
        )
        self._save(record)
        self._jobs.put((job, record))
        return record

    def stop(self) -> None:
        self._jobs.put(None)
        self.join(30)

    def run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, record = item
            try:
                self._retrain(job, record)
            except Exception as err:  # recorded on the retraining; the thread goes on
                log.exception("retraining %s failed", record.id)
                self._finish(record, M.RETRAINING_STATE_FAILED, f"{type(err).__name__}: {err}"[:500])
            job.done(record.state == M.RETRAINING_STATE_ROLLED_OUT)

    def _save(self, record: monitor_pb2.Retraining) -> None:
        self._store.put_retraining(record.id, record.deployment_id, record.SerializeToString())
        self._changes.notify()

    def _finish(self, record: monitor_pb2.Retraining, state: int, reason: str = "") -> None:
        record.state, record.reason = state, reason
        record.finished_at.CopyFrom(_stamp())
        self._save(record)

    def _retrain(self, job: Job, record: monitor_pb2.Retraining) -> None:
        context = job.context
        labeled = self._store.labeled_since(job.deployment_id, job.since_label)
        record.state = M.RETRAINING_STATE_TRAINING
        self._save(record)
        X = np.vstack([x.inputs for x in labeled]).astype(np.float32)
        y = targets([x.label for x in labeled], context.classification)
        unseen_from = next((i for i, x in enumerate(labeled) if x.number > job.unseen_after), len(labeled))
        fit, held = holdout_split(len(labeled), seed=len(labeled), unseen_from=unseen_from)
        challenger = self._fit(context, X[fit], y[fit], f"{record.id}-challenger")
        record.state = M.RETRAINING_STATE_EVALUATING
        # The champion as it serves now: the held-out rows may have been answered by an older
        # version (a second round of a series spans a rollout).
        champion_predictions = first_output(context.artifact, X[held]).astype(y.dtype)
        challenger_predictions = first_output(challenger, X[held]).astype(y.dtype)
        verdict = judge(
            context.task, y[held], champion_predictions, challenger_predictions, job.confidence, job.follow_up
        )
        name = metric_name(context.task)
        record.champion_metrics.append(types_pb2.Metric(name=name, value=verdict.champion, dataset="held-out recent"))
        record.challenger_metrics.append(
            types_pb2.Metric(name=name, value=verdict.challenger, dataset="held-out recent")
        )
        self._save(record)
        if not verdict.roll_out:
            self._finish(record, M.RETRAINING_STATE_REJECTED, verdict.reason)
            return
        final = self._fit(context, X, y, f"{record.id}-final")  # judged on held-out; learns from all
        version = self._register(job, final, X, labeled, verdict.challenger)
        record.challenger_version = version
        self._save(record)
        problem = self._roll_out(job, version)
        if problem:
            self._finish(record, M.RETRAINING_STATE_FAILED, problem)
            return
        self._finish(record, M.RETRAINING_STATE_ROLLED_OUT, verdict.reason)

    def _fit(self, context: ModelContext, X: np.ndarray, y: np.ndarray, name: str) -> bytes:
        """The recipe fitted on (X, y) by a training job the scheduler places; ONNX bytes."""
        # An unguessable name: the scheduler moves the file into the job's private directory.
        data = self._jobs_dir / f"{name}-{secrets.token_hex(16)}.npz"
        np.savez(data, X=X, y=y)
        job_dir = None
        try:
            with SchedulerClient(self._scheduler, self._token) as scheduler:
                ref = types_pb2.ModelRef(name=context.name, version=context.version)
                started = scheduler.run_training_job(ref, f"file://{data}")
                job_dir = Path(started.output_uri.removeprefix("file://")).parent
                finished = scheduler.wait_training_job(started.id)
            return Path(finished.output_uri.removeprefix("file://")).read_bytes()
        finally:
            data.unlink(missing_ok=True)  # if the scheduler refused it
            if job_dir is not None:
                shutil.rmtree(job_dir, ignore_errors=True)

    def _register(
        self, job: Job, onnx_model: bytes, X: np.ndarray, labeled: list[Labeled], challenger_score: float
    ) -> int:
        context = job.context
        with RegistryClient(self._registry, self._token) as registry:
            description = types_pb2.ModelDescription()
            parent = registry.get(types_pb2.ModelRef(name=context.name, version=context.version))
            description.CopyFrom(parent.description)
            del description.metrics[:]
            description.metrics.append(
                types_pb2.Metric(name=metric_name(context.task), value=challenger_score, dataset="held-out recent")
            )
            description.lineage.CopyFrom(
                types_pb2.Lineage(
                    parent_version=context.version, trigger=job.trigger_event_id, training_rows=len(labeled)
                )
            )
            description.summary = f"retrained from version {context.version} on {len(labeled)} recent labeled samples"
            reply = registry.register(onnx_model, description, reference_data=X)
        return reply.model.version

    def _roll_out(self, job: Job, version: int) -> str:
        """'' once the deployment serves `version` and the alias moved; otherwise why not."""
        name = job.context.name
        with SchedulerClient(self._scheduler, self._token) as scheduler:
            scheduler.update(job.deployment_id, types_pb2.ModelRef(name=name, version=version))
            settled = scheduler.wait_settled(job.deployment_id)
        if settled.model.version != version:
            return f"the scheduler could not roll {job.deployment_id} to version {version}; see its events"
        with RegistryClient(self._registry, self._token) as registry:
            registry.set_alias(name, CHAMPION_ALIAS, version)
        return ""

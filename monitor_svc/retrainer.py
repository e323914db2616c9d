"""Runs retrainings, each on a thread of its own, so that no rpc waits for a fit and no round
waits for another.

An OPEN deployment's retraining: the labeled samples since the change (from the store) -> one
training job the scheduler places with the model's train resources (RunTrainingJob with the
data and its folds; ReadTrainingJobOutput for the model and the predictions) fits the registered
recipe on all of them and predicts each row with a fold by fits that never learnt it (the
forest's out-of-bag trees, or a fit on the other folds) -> challenger and champion
(the version serving now) scored on the labels the champion never learnt from -> rolled out if
a paired test says the challenger is better at the policy's confidence (mlaas/retraining/rounds.py).

A STRICT deployment's retraining is one training job on its node (RunTrainingJob with a
NodeRound), which does the same there from the data the node keeps and sends back only the
verdict, the scores, the counts and the model; with differential privacy in the policy, the
epsilon is charged to the deployment's privacy ledger first, and a round past the budget is
refused.

Then, either way, the model is registered with its lineage (where it was fitted, on how many
samples, at what epsilon), the deployment rolls to it (the scheduler's UpdateDeployment) and the
`champion` alias moves. With the policy's shadow_retrained, it first runs in shadow beside the
served version (a trial, monitor_svc/trials.py) and the round ends as the trial does. Every
step is a state of the Retraining record, watched by WatchRetraining; the job's `done` learns
the outcome (the deployment's RetrainSchedule plans the next round from it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Histogram

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import FailedPrecondition, MlaasError
from mlaas.export import sklearn_to_onnx
from mlaas.message_limits import MAX_MESSAGE_BYTES
from mlaas.refs import job_state_name
from mlaas.retraining.federated import assemble, average
from mlaas.retraining.outcomes import targets, usable
from mlaas.retraining.rounds import (
    HELD_OUT,
    cross_validated_round,
    decide,
    first_output,
    mcnemar,
    metric_name,
    round_result,
)
from mlaas.retraining.stages import durations, stage_time
from mlaas.services.label_store import made_by
from mlaas.v1 import monitor_pb2, scheduler_pb2, types_pb2
from monitor_svc.changes import Changes
from monitor_svc.context import ContextLoader
from monitor_svc.monitoring import ModelContext
from monitor_svc.store import MonitorStore

log = logging.getLogger(__name__)
M, S = monitor_pb2, scheduler_pb2
CHAMPION_ALIAS = "champion"
MONITOR_SITE = "monitor"  # where an OPEN deployment's challengers are fitted
POLL_SECONDS = 0.05  # how often a round asks after its jobs and rollouts: each wait is on the loop's path
TRIAL_POLL_SECONDS = 0.5  # and after its challenger's trial, which waits for live labels


@dataclass(frozen=True)
class Site:
    """Another deployment of a federation, and the labels on its node a round learns from."""

    deployment_id: str
    since_label: int
    unseen_after: int


@dataclass(frozen=True)
class Job:
    deployment_id: str
    context: ModelContext  # of the champion: the version the deployment serves
    trigger_event_id: str
    since_label: int  # matched-label number after which the data starts
    unseen_after: int  # the champion learnt from no label after this one: they judge it
    confidence: float  # of the paired test the challenger must pass
    follow_up: bool = False  # the champion came from an earlier round of the same series (judge)
    strict: bool = False  # retrained on the deployment's node, from the data kept there
    epsilon: float = 0.0  # differential privacy for the fit (0: off), charged to the ledger
    budget: float = 0.0  # the ledger's total
    federation: str = ""  # retrained with the other `sites` of this federation (its owner/name)
    sites: tuple[Site, ...] = ()  # the other deployments that take part in a federated round
    members: tuple[str, ...] = ()  # and every other one of the federation it rolls out to
    alarm_at: float = 0.0  # when the alarm that started the series was raised (seconds since the epoch)
    shadow: bool = False  # a better challenger runs in shadow first, and serves only if it wins there
    # deployment -> the last label number its new version learnt from (filled when it rolls out)
    learnt: dict[str, int] = field(default_factory=dict)
    done: Callable[[bool], None] = lambda rolled_out: None  # told whether it rolled out

    @property
    def deployments(self) -> list[str]:
        """Those the round rolls out to: the deployment, and its federation's other members."""
        return [self.deployment_id, *self.members]


def _rows_per_request(features: int) -> int:
    """How many labeled rows (float32 inputs, a float64 label) a training job's request carries:
    a round on more learns from the newest that many."""
    return max(1, (MAX_MESSAGE_BYTES - (1 << 20)) // (4 * features + 8))


def _stamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


class Retrainer(threading.Thread):
    def __init__(
        self,
        store: MonitorStore,
        registry: RegistryClient,
        scheduler: SchedulerClient,
        changes: Changes,
        contexts: ContextLoader | None = None,
        stage_seconds: Histogram | None = None,
    ):
        """`registry`, `scheduler`: clients calling as the Monitor (built once, in app.py)."""
        super().__init__(name="retrainer", daemon=True)
        self._contexts = contexts
        self._stage_seconds = stage_seconds
        self._store = store
        self._registry = registry
        self._scheduler = scheduler
        self._changes = changes
        self._jobs: queue.Queue[tuple[Job, monitor_pb2.Retraining] | None] = queue.Queue()
        self._running: set[threading.Thread] = set()
        self._stopping = threading.Event()
        # One round of a federation at a time (by owner and name: its members may differ by round).
        self._federations: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def submit(self, job: Job) -> monitor_pb2.Retraining:
        record = M.Retraining(
            id=f"r-{uuid.uuid4().hex[:12]}",
            deployment_id=job.deployment_id,
            trigger_event_id=job.trigger_event_id,
            parent_version=job.context.version,
            state=M.RETRAINING_STATE_PENDING,
            started_at=_stamp(),
        )
        if job.alarm_at:
            record.stages.append(stage_time("alarm", job.alarm_at))
        record.stages.append(stage_time("due"))
        self._save(record)
        self._jobs.put((job, record))
        return record

    def recover(self) -> None:
        """After a stop mid-round (a kill, a restart): a retraining left unfinished is FAILED (its
        series is not resumed; a new alarm starts one). A job of it that is still on a node ends
        on its own, and the scheduler removes it and its files after the retention."""
        final = (M.RETRAINING_STATE_ROLLED_OUT, M.RETRAINING_STATE_REJECTED, M.RETRAINING_STATE_FAILED)
        for raw in self._store.every_retraining():
            record = M.Retraining.FromString(raw)
            if record.state == M.RETRAINING_STATE_IN_TRIAL:  # the trial went on: its end ends the round
                self._start_thread(self._resume_trial, (record,), f"trial-of-{record.id}")
            elif record.state not in final:
                self._finish(record, M.RETRAINING_STATE_FAILED, "interrupted: the Monitor stopped during it")

    def stop(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        deadline = time.monotonic() + 30
        self.join(30)
        with self._lock:
            running = list(self._running)
        for worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))

    def run(self) -> None:
        """Each retraining on a thread of its own: a round waiting for room on a full STRICT node
        must not hold up the others (a deployment has one round at a time: its RetrainSchedule)."""
        while (item := self._jobs.get()) is not None:
            self._start_thread(self._run_one, item, f"retraining-{item[1].id}")

    def _start_thread(self, target: Callable, args: tuple, name: str) -> None:
        worker = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._running.add(worker)
        worker.start()

    def _run_one(self, job: Job, record: monitor_pb2.Retraining) -> None:
        try:
            with self._federation(job):
                self._retrain(job, record)
        except Exception as err:  # recorded on the retraining
            log.exception("retraining %s failed", record.id)
            self._finish(record, M.RETRAINING_STATE_FAILED, f"{type(err).__name__}: {err}"[:500])
        finally:
            job.done(record.state == M.RETRAINING_STATE_ROLLED_OUT)
            with self._lock:
                self._running.discard(threading.current_thread())

    def _federation(self, job: Job) -> contextlib.AbstractContextManager:
        """A federation's rounds one after the other (a later one sees the earlier one's rollout)."""
        if not job.federation:
            return contextlib.nullcontext()
        with self._lock:
            return self._federations.setdefault(job.federation, threading.Lock())

    def _save(self, record: monitor_pb2.Retraining) -> None:
        self._store.put_retraining(record.id, record.deployment_id, record.SerializeToString())
        self._changes.notify()

    def _finish(self, record: monitor_pb2.Retraining, state: monitor_pb2.RetrainingState, reason: str = "") -> None:
        record.state, record.reason = state, reason
        record.finished_at.CopyFrom(_stamp())
        self._save(record)

    def _retrain(self, job: Job, record: monitor_pb2.Retraining) -> None:
        job = self._against_serving(job, record)
        if job.federation:
            self._retrain_federated(job, record)
        elif job.strict:
            self._retrain_on_node(job, record)
        else:
            self._retrain_here(job, record)

    def _against_serving(self, job: Job, record: monitor_pb2.Retraining) -> Job:
        """The round's champion is the version the deployment serves (once a rollout under way
        settles), as the scheduler says: the Monitor's own view follows the feedback, which
        reaches it only some time after a rollout, and a round judged against the version before
        would let a worse challenger through and name the wrong parent."""
        scheduler = self._scheduler
        serving = scheduler.wait_settled(job.deployment_id).model.version
        if serving == job.context.version or self._contexts is None:
            return job
        record.parent_version = serving
        self._save(record)
        return dataclasses.replace(job, context=self._contexts.load(job.context.name, serving))

    def _retrain_here(self, job: Job, record: monitor_pb2.Retraining) -> None:
        """An OPEN deployment's round, on the labels the Monitor keeps (fits as training jobs)."""
        context = job.context
        artifact = context.artifact
        if artifact is None:  # the loader always sets it; a context made by hand may not
            raise FailedPrecondition(f"{context.name}:{context.version} has no model file to judge against")
        # Only the model's owner's requests: a version registered as theirs, reference data
        # included, never learns a lease holder's inputs.
        labeled = made_by(self._store.labeled_since(job.deployment_id, job.since_label), context.owner)
        labeled = usable(labeled, context.classification)
        labeled = labeled[-_rows_per_request(len(labeled[0].inputs) if labeled else 1) :]
        record.state, record.trained_on = M.RETRAINING_STATE_TRAINING, MONITOR_SITE
        self._save(record)
        X = np.vstack([x.inputs for x in labeled]).astype(np.float32)
        y = targets([x.label for x in labeled], context.classification)
        unseen_from = next((i for i, x in enumerate(labeled) if x.number > job.unseen_after), len(labeled))

        def evaluating() -> None:
            record.state = M.RETRAINING_STATE_EVALUATING
            self._save(record)

        outcome = cross_validated_round(
            context.task, X, y, unseen_from, lambda rows: first_output(artifact, rows),
            lambda X, y, fold: self._cross_fit(context, X, y, fold, record),
            job.confidence, job.follow_up, evaluating=evaluating,
        )  # fmt: skip
        result = round_result(
            context.task, outcome.verdict, training_samples=outcome.training_samples,
            held_out_samples=outcome.held_out_samples,
        )  # fmt: skip
        self._conclude(job, record, result, outcome.model, reference=X)

    def _retrain_on_node(self, job: Job, record: monitor_pb2.Retraining) -> None:
        """A STRICT deployment's round: a training job on its node fits and judges there, from the
        data its runtimes keep, and sends back only its verdict, scores, counts and the model."""
        context = job.context
        plan = S.NodeRound(
            deployment_id=job.deployment_id, since_label=job.since_label, unseen_after=job.unseen_after,
            confidence=job.confidence, follow_up=job.follow_up, epsilon=job.epsilon,
        )  # fmt: skip
        scheduler = self._scheduler
        try:
            started = scheduler.run_node_round(types_pb2.ModelRef(name=context.name, version=context.version), plan)
        except FailedPrecondition as refused:  # the privacy terms, checked and charged there
            self._finish(record, M.RETRAINING_STATE_REJECTED, refused.message)
            return
        record.state, record.trained_on = M.RETRAINING_STATE_TRAINING, started.node
        self._save(record)
        with self._removing([started]):
            finished = self._follow(scheduler, started, record)
            self._add_stages(record, finished, "round")
            result = finished.round_result
            model = scheduler.training_job_output(finished.id) if result.better else None
        # The new version's reference data: its parent's, the owner's own (no row of the node's).
        self._conclude(job, record, result, model, reference=context.reference)

    def _retrain_federated(self, job: Job, record: monitor_pb2.Retraining) -> None:
        """A federated round (mlaas/retraining/federated.py): every site fits on its node and sends
        its parameters; they are averaged into a candidate; every site judges it on its own
        held-out labels and sends counts; the pooled counts decide, and a better candidate rolls
        out to every site."""
        context = job.context
        ref = types_pb2.ModelRef(name=context.name, version=context.version)
        sites = [Site(job.deployment_id, job.since_label, job.unseen_after), *job.sites]
        plans = [
            S.NodeRound(deployment_id=site.deployment_id, since_label=site.since_label,
                        unseen_after=site.unseen_after, confidence=job.confidence)
            for site in sites
        ]  # fmt: skip
        record.federated_deployments[:] = [site.deployment_id for site in sites]
        record.state = M.RETRAINING_STATE_TRAINING
        self._save(record)
        reference = context.reference.astype(np.float32)
        scheduler = self._scheduler
        # Another site's round may have rolled the federation on while this one waited.
        moved = [d for d in job.deployments if scheduler.get(d).model.version != context.version]
        if moved:
            why = f"{', '.join(moved)} no longer serve version {context.version}: another round rolled them on"
            self._finish(record, M.RETRAINING_STATE_REJECTED, why)
            return
        fitted = self._at_every_site(scheduler, ref, plans, record)
        parameters = [(p, j.round_result.training_samples) for p, j in fitted]
        for plan, (_, finished) in zip(plans, fitted, strict=True):
            plan.until_label = finished.round_result.until_label  # the judging step's labels too
        name = job.federation.split("/", 1)[-1]
        record.trained_on = f"federation {name} ({', '.join(j.node for _, j in fitted)})"
        averaged = assemble(context.recipe, reference, average(context.recipe, parameters))
        candidate = sklearn_to_onnx(averaged, reference[:1])
        record.state = M.RETRAINING_STATE_EVALUATING
        self._save(record)
        results = [j.round_result for _, j in self._at_every_site(scheduler, ref, plans, record, candidate)]
        held = sum(r.held_out_samples for r in results)
        wins, losses = sum(r.wins for r in results), sum(r.losses for r in results)
        champion = sum(r.champion.value * r.held_out_samples for r in results) / max(held, 1)
        challenger = sum(r.challenger.value * r.held_out_samples for r in results) / max(held, 1)
        verdict = decide(champion, challenger, held, mcnemar(wins, losses), job.confidence, job.follow_up, wins, losses)
        result = round_result(
            context.task, verdict, training_samples=sum(samples for _, samples in parameters), held_out_samples=held
        )
        result.reason += f"; pooled from {len(sites)} sites"
        job.learnt.update({plan.deployment_id: plan.until_label for plan in plans})
        self._conclude(job, record, result, candidate if verdict.roll_out else None, reference=context.reference)

    def _at_every_site(
        self, scheduler: SchedulerClient, ref: types_pb2.ModelRef, plans: list[S.NodeRound],
        record: monitor_pb2.Retraining, candidate: bytes | None = None,
    ) -> list[tuple[dict[str, np.ndarray], S.TrainingJob]]:  # fmt: skip
        """One step of a federated round, a job on every site's node at once: each fits its
        parameters (returned with the finished job), or with `candidate` judges it."""
        started: list[S.TrainingJob] = []
        found = []
        with self._removing(started):
            for plan in plans:
                step = S.NodeRound(parameters_only=candidate is None, judge_candidate=candidate is not None)
                step.MergeFrom(plan)
                started.append(scheduler.run_node_round(ref, step, candidate or b""))
            for job in started:
                finished = self._follow(scheduler, job, record)
                parameters = {}
                if candidate is None:
                    fitted = scheduler.training_job_output(finished.id, S.TRAINING_OUTPUT_PARAMETERS)
                    with np.load(io.BytesIO(fitted)) as arrays:
                        parameters = {name: arrays[name] for name in arrays.files}
                found.append((parameters, finished))
            return found

    @contextlib.contextmanager
    def _removing(self, jobs: list[S.TrainingJob]) -> Iterator[None]:
        """Whatever happens, the jobs (those in the list when the block ends) and their files go:
        the round read what it needed."""
        try:
            yield
        finally:
            for job in jobs:
                with contextlib.suppress(MlaasError):  # or they go after the scheduler's retention
                    self._scheduler.delete_training_job(job.id)

    def _follow(self, scheduler: SchedulerClient, job: S.TrainingJob, record: monitor_pb2.Retraining) -> S.TrainingJob:
        """Waits for a round's job to end; while it waits for room on its node, the retraining's
        reason says so."""
        while job.state in (S.JOB_STATE_PENDING, S.JOB_STATE_RUNNING):
            waiting = f"waiting for room on node {job.node}: {job.reason}" if job.state == S.JOB_STATE_PENDING else ""
            if record.reason != waiting:
                record.reason = waiting
                self._save(record)
            time.sleep(POLL_SECONDS)
            job = scheduler.training_job(job.id)
        if job.state != S.JOB_STATE_SUCCEEDED:
            ended = job_state_name(job.state)
            raise FailedPrecondition(f"training job {job.id} on node {job.node} ended {ended}: {job.reason}")
        return job

    def _conclude(
        self, job: Job, record: monitor_pb2.Retraining, result: S.RoundResult, model: bytes | None,
        reference: np.ndarray,
    ) -> None:  # fmt: skip
        """Records a round's scores; a better challenger is registered with its lineage, rolled
        out and made the champion."""
        record.state = M.RETRAINING_STATE_EVALUATING
        record.champion_metrics.append(result.champion)
        record.challenger_metrics.append(result.challenger)
        record.training_samples, record.epsilon_spent = result.training_samples, result.epsilon_spent
        record.stages.append(stage_time("judged"))
        self._save(record)
        if not result.better:
            self._finish(record, M.RETRAINING_STATE_REJECTED, result.reason)
            return
        assert model is not None, "every caller sends the model of a better challenger"
        version = self._register(job, record, model, reference, result.challenger.value)
        record.challenger_version = version
        record.stages.append(stage_time("registered"))
        self._save(record)
        if job.shadow:
            self._try_in_shadow(job, record, version, result.reason)
            return
        problem = self._roll_out(job, version)
        if problem:
            self._finish(record, M.RETRAINING_STATE_FAILED, problem)
            return
        self._served(record, result.reason)

    def _served(self, record: monitor_pb2.Retraining, reason: str) -> None:
        record.stages.append(stage_time("serving"))
        self._finish(record, M.RETRAINING_STATE_ROLLED_OUT, reason)
        if self._stage_seconds is not None:
            for stage, seconds in durations(record.stages):
                self._stage_seconds.labels(stage).observe(seconds)

    def _try_in_shadow(self, job: Job, record: monitor_pb2.Retraining, version: int, reason: str) -> None:
        """The better challenger runs in shadow beside the served version: a trial the Monitor
        judges on live labels. The round ends as the trial does."""
        challenger = types_pb2.ModelRef(name=job.context.name, version=version)
        try:
            self._scheduler.start_trial(job.deployment_id, challenger)
        except FailedPrecondition as refused:  # busy, or shared with other tenants
            self._finish(record, M.RETRAINING_STATE_FAILED, f"{reason}; its trial could not start: {refused.message}")
            return
        record.state, record.reason = M.RETRAINING_STATE_IN_TRIAL, reason
        record.stages.append(stage_time("in trial"))
        self._save(record)
        self._after_trial(record, job.context.name)

    def _resume_trial(self, record: monitor_pb2.Retraining) -> None:
        try:
            self._after_trial(record, self._scheduler.get(record.deployment_id).model.name)
        except Exception as err:  # the deployment is gone, or the scheduler away for good
            log.exception("retraining %s: its trial could not be followed", record.id)
            self._finish(record, M.RETRAINING_STATE_FAILED, f"{record.reason}; {type(err).__name__}: {err}"[:500])
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())

    def _after_trial(self, record: monitor_pb2.Retraining, name: str) -> None:
        """Waits for the trial of the round's challenger to end (a Monitor that stops leaves the
        round IN_TRIAL; its next start follows it on), then ends the round as the trial did."""
        version = record.challenger_version
        while True:
            deployment = self._scheduler.get(record.deployment_id)
            if deployment.state not in (S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_UPDATING):
                state = S.DeploymentState.Name(deployment.state).removeprefix("DEPLOYMENT_STATE_")
                self._finish(record, M.RETRAINING_STATE_REJECTED, f"{record.reason}; its deployment is {state}")
                return
            if deployment.trial.version != version and deployment.state != S.DEPLOYMENT_STATE_UPDATING:
                break
            if self._stopping.wait(TRIAL_POLL_SECONDS):
                return
        if deployment.model.version != version:
            self._finish(record, M.RETRAINING_STATE_REJECTED, f"{record.reason}; then dropped from its trial")
            return
        self._registry.set_alias(name, CHAMPION_ALIAS, version)
        self._served(record, f"{record.reason}; then promoted by its trial on live labels")

    @staticmethod
    def _add_stages(record: monitor_pb2.Retraining, job: scheduler_pb2.TrainingJob, step: str) -> None:
        """A finished job's stages, under the round's step that ran it."""
        for stage in job.stages:
            record.stages.add(stage=f"{step} {stage.stage}").at.CopyFrom(stage.at)

    def _cross_fit(
        self, context: ModelContext, X: np.ndarray, y: np.ndarray, fold: np.ndarray, record: monitor_pb2.Retraining
    ) -> tuple[bytes, np.ndarray]:
        """By a training job the scheduler places: the recipe fitted on (X, y) (ONNX bytes), and
        the rows with a fold predicted by fits that never learnt them (rounds.cross_fit). The job's
        stages join the round's."""
        data = io.BytesIO()
        np.savez(data, X=X, y=y, fold=fold)
        scheduler = self._scheduler
        ref = types_pb2.ModelRef(name=context.name, version=context.version)
        started = scheduler.run_training_job(ref, input_data=data.getvalue())
        with self._removing([started]):
            finished = scheduler.wait_training_job(started.id, poll=POLL_SECONDS)
            self._add_stages(record, finished, "challenger")
            predictions = scheduler.training_job_output(finished.id, S.TRAINING_OUTPUT_PREDICTIONS)
            return scheduler.training_job_output(finished.id), np.load(io.BytesIO(predictions), allow_pickle=False)

    def _register(
        self, job: Job, record: monitor_pb2.Retraining, onnx_model: bytes, reference: np.ndarray, score: float
    ) -> int:
        context = job.context
        registry = self._registry
        description = types_pb2.ModelDescription()
        parent = registry.get(types_pb2.ModelRef(name=context.name, version=context.version))
        description.CopyFrom(parent.description)
        del description.metrics[:]
        description.metrics.append(types_pb2.Metric(name=metric_name(context.task), value=score, dataset=HELD_OUT))
        description.lineage.CopyFrom(
            types_pb2.Lineage(
                parent_version=context.version, trigger=job.trigger_event_id,
                training_rows=record.training_samples, trained_on=record.trained_on, epsilon=record.epsilon_spent,
            )
        )  # fmt: skip
        if record.federated_deployments:
            where = f" by {record.trained_on}"
        else:
            where = "" if record.trained_on == MONITOR_SITE else f" on node {record.trained_on}"
        privacy = f" with differential privacy (epsilon {record.epsilon_spent:g})" if record.epsilon_spent else ""
        description.summary = (
            f"retrained from version {context.version}{where} on {record.training_samples} recent labeled "
            f"samples{privacy}"
        )
        reply = registry.register(onnx_model, description, reference_data=reference)
        return reply.model.version

    def _roll_out(self, job: Job, version: int) -> str:
        """'' once the deployments (a federation's: every site's) serve `version` and the alias
        moved; otherwise why not."""
        name = job.context.name
        scheduler = self._scheduler
        for deployment_id in job.deployments:  # they roll at once
            scheduler.update(deployment_id, types_pb2.ModelRef(name=name, version=version))
        settled = [scheduler.wait_settled(d, poll=POLL_SECONDS) for d in job.deployments]
        stuck = [d.id for d in settled if d.model.version != version]
        if stuck:
            return f"the scheduler could not roll {', '.join(stuck)} to version {version}; see their events"
        registry = self._registry
        registry.set_alias(name, CHAMPION_ALIAS, version)
        return ""

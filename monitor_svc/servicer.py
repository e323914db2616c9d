"""mlaas.v1.MonitorService: feedback and labels in, drift events and retrainings out."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator

import grpc
import numpy as np

from mlaas.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mlaas.services.auth import bearer_token
from mlaas.services.label_store import label_pairs
from mlaas.services.paging import decode_page_token, encode_page_token, is_offset, page_size, query_key
from mlaas.services.privacy_terms import MAX_BUDGET, MAX_EPSILON, epsilon_problem
from mlaas.services.servicing import maps_errors
from mlaas.tensors import from_raw
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc
from monitor_svc.access import DeploymentAccess, check_versions
from monitor_svc.changes import Changes
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.monitoring import MAX_FALSE_ALARMS_PER_100K, OPEN_NOT_PRIVATE, default_policy
from monitor_svc.privacy import SchedulerPrivacy
from monitor_svc.store import MonitorStore

M = monitor_pb2
WATCH_POLL_SECONDS = 1.0
LEAVE_FEDERATION = "-"
FEDERATION_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
RECENT_EVENTS = 20


def _rows(tensor: monitor_pb2.RawTensor) -> np.ndarray:
    """A record's tensor as rows; InvalidArgument when its bytes, datatype and shape disagree."""
    try:
        array = from_raw(tensor.data, tensor.datatype, tuple(tensor.shape))
    except (KeyError, ValueError) as err:
        raise InvalidArgument(
            f"a feedback tensor of datatype {tensor.datatype!r}, shape {list(tensor.shape)} and "
            f"{len(tensor.data)} bytes cannot be read: {err}"
        ) from None
    return array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)


def _until_gone(requests: Iterator) -> Iterator:
    """The client's messages; a client that goes away mid-stream (a runtime draining) just ends
    it: what arrived before is kept."""
    try:
        yield from requests
    except grpc.RpcError:
        return


def _by_version(
    records: Iterable[monitor_pb2.InferenceRecord],
) -> dict[int, tuple[list[str], np.ndarray, np.ndarray]]:
    """The records' rows grouped by model version, in order: (request ids, inputs, predictions).
    Data drift watches the first input tensor, prediction drift the first output."""
    grouped: dict[int, tuple[list[str], list[np.ndarray], list[np.ndarray]]] = {}
    for record in records:
        if not record.inputs or not record.outputs:
            raise InvalidArgument("a feedback record needs its inputs and outputs")
        inputs, predictions = _rows(record.inputs[0]), _rows(record.outputs[0])[:, 0]
        if inputs.shape[0] != predictions.shape[0]:
            raise InvalidArgument("inputs and outputs of a record have different row counts")
        ids, xs, ps = grouped.setdefault(record.model_version, ([], [], []))
        ids.extend(list(record.request_ids) + [""] * (inputs.shape[0] - len(record.request_ids)))
        xs.append(inputs)
        ps.append(predictions)
    return {v: (ids, np.vstack(xs), np.concatenate(ps)) for v, (ids, xs, ps) in grouped.items()}


def _shadows(records: Iterable[monitor_pb2.InferenceRecord]) -> dict[int, tuple[list[str], list[str]]]:
    """A trial's challenger's answers in the records, by its version: (request ids, predictions)."""
    found: dict[int, tuple[list[str], list[str]]] = {}
    for record in records:
        if not record.shadow_model_version:
            continue
        if not record.shadow_outputs:
            raise InvalidArgument("a record with a shadow_model_version needs its shadow_outputs")
        predictions = _rows(record.shadow_outputs[0])[:, 0]
        if len(record.request_ids) > predictions.shape[0]:
            raise InvalidArgument("a record's shadow_outputs have fewer rows than its request ids")
        ids, answers = found.setdefault(record.shadow_model_version, ([], []))
        ids.extend(record.request_ids)
        answers.extend(str(p) for p in predictions[: len(record.request_ids)])
    return found


MIN_FIRST_ROUND_LABELS = 40  # a quarter held out: 10 labels, the fewest a paired test can be sure on
MIN_TRIAL_LABELS = 10
MAX_TRIAL_LABELS = 10_000  # a running trial keeps its labels (and both answers) until it is decided


def validate_policy(
    policy: monitor_pb2.MonitorPolicy, current: monitor_pb2.MonitorPolicy | None = None
) -> monitor_pb2.MonitorPolicy:
    """`current` (the defaults if None) with the fields `policy` sets; InvalidArgument for values
    that make no sense. Setting one field never resets the others (auto_retrain included: it
    changes only when the caller sets it)."""
    merged = monitor_pb2.MonitorPolicy()
    merged.CopyFrom(current or default_policy())
    for field in (
        "window_size",
        "trial_labels",
        "min_labels",
        "first_round_labels",
        "cooldown_labels",
        "performance_expected_run_length",
    ):
        value = getattr(policy, field)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"policy.{field} must be a finite number, not negative")
        if value:
            setattr(merged, field, value)
    if not 8 <= merged.window_size <= 4096:
        raise InvalidArgument("policy.window_size must be between 8 and 4096")
    if 0 < merged.trial_labels < MIN_TRIAL_LABELS or merged.trial_labels > MAX_TRIAL_LABELS:
        raise InvalidArgument(
            f"policy.trial_labels must be between {MIN_TRIAL_LABELS} (a paired test needs them) and {MAX_TRIAL_LABELS}"
        )
    if 0 < merged.first_round_labels < MIN_FIRST_ROUND_LABELS:
        raise InvalidArgument(
            f"policy.first_round_labels must be at least {MIN_FIRST_ROUND_LABELS}: fewer hold out too few labels to "
            "judge (set it to min_labels for no early round)"
        )
    if policy.HasField("false_alarms_per_100k"):
        rate = policy.false_alarms_per_100k
        if not (math.isfinite(rate) and 0 < rate <= MAX_FALSE_ALARMS_PER_100K):
            raise InvalidArgument(
                f"policy.false_alarms_per_100k must be above 0 and at most {MAX_FALSE_ALARMS_PER_100K:g} "
                "(each detector then expects a false alarm every 50 predictions)"
            )
        merged.false_alarms_per_100k = rate
    if policy.HasField("challenger_confidence"):
        confidence = policy.challenger_confidence
        if not (math.isfinite(confidence) and 0.5 <= confidence < 1):
            raise InvalidArgument("policy.challenger_confidence must be at least 0.5 and below 1")
        merged.challenger_confidence = confidence
    if policy.HasField("auto_retrain"):
        merged.auto_retrain = policy.auto_retrain
    if policy.HasField("shadow_retrained"):
        merged.shadow_retrained = policy.shadow_retrained
    for field, most in (("privacy_epsilon", MAX_EPSILON), ("privacy_budget", MAX_BUDGET)):
        if policy.HasField(field):
            value = getattr(policy, field)
            if problem := epsilon_problem(f"policy.{field}", value, most):
                raise InvalidArgument(problem)
            setattr(merged, field, value)
    if policy.federation:
        name = "" if policy.federation == LEAVE_FEDERATION else policy.federation
        if name and not FEDERATION_NAME.fullmatch(name):
            raise InvalidArgument("policy.federation must be 1-64 letters, digits, '.', '_' or '-' ('-' to leave)")
        merged.federation = name
    if merged.federation and merged.privacy_epsilon:
        raise InvalidArgument("federated rounds with differential privacy are not supported yet: set one of them")
    if merged.privacy_epsilon and merged.privacy_budget < merged.privacy_epsilon:
        raise InvalidArgument(
            "policy.privacy_budget (the total epsilon retrainings may spend) must be at least privacy_epsilon"
        )
    return merged


@maps_errors
class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(
        self, store: MonitorStore, deployments: DeploymentMonitors, changes: Changes, access: DeploymentAccess,
        privacy: SchedulerPrivacy,
    ):  # fmt: skip
        self._privacy = privacy
        self._store = store
        self._deployments = deployments
        self._changes = changes
        self._access = access

    def IngestFeedback(self, request_iterator, context):
        accepted, edges = 0, None
        for request in _until_gone(request_iterator):
            self._check(context, request.deployment_id)
            model_name, versions = self._access.feedback_model(context, request.model_name)
            grouped, shadows = _by_version(request.records), _shadows(request.records)
            summarised = (s.model_version for s in (*request.summaries, *request.label_summaries))
            tried = (s.trial.challenger_version for s in request.label_summaries if s.HasField("trial"))
            reported = {*grouped, *shadows, *summarised, *tried} | ({request.edges_for_version} - {0})
            check_versions(request.deployment_id, reported, versions)
            if request.dropped:
                self._deployments.count_dropped(request.deployment_id, request.dropped)
            if grouped and self._strict(request.deployment_id):
                raise PermissionDenied(f"deployment {request.deployment_id} is STRICT: no row of it leaves its node")
            for version, (ids, answers) in shadows.items():  # before their labels may be matched below
                self._store.add_shadow_predictions(request.deployment_id, ids, version, answers)
                self._deployments.trials.shadowed(request.deployment_id)
            for version, (ids, inputs, predictions) in grouped.items():
                monitor = self._deployments.for_version(request.deployment_id, model_name, version, False)
                features = monitor.context.reference.shape[1]
                if inputs.shape[1] != features:
                    raise InvalidArgument(
                        f"feedback rows have {inputs.shape[1]} values; {model_name}:{version} takes {features}"
                    )
                with monitor.lock:  # one batch: one pass of the detectors, one transaction
                    events = monitor.observe(inputs, predictions)
                    matched = self._store.add_predictions(
                        request.deployment_id, ids, version, inputs, [str(p) for p in predictions]
                    )
                    events += self._deployments.learn(monitor, matched)
                self._deployments.publish(request.deployment_id, events)
                accepted += inputs.shape[0]
            for summary in request.summaries:  # a STRICT runtime: counts only, never rows
                monitor = self._deployments.for_version(request.deployment_id, model_name, summary.model_version, True)
                with monitor.lock:
                    events = monitor.observe_summary(summary)
                self._deployments.publish(request.deployment_id, events)
                accepted += summary.features[0].n if summary.features else 0
            if request.edges_for_version:  # a STRICT runtime's, before its first window of the version
                version = request.edges_for_version
                edges = self._deployments.for_version(request.deployment_id, model_name, version, True).summary_edges()
            for counts in request.label_summaries:  # a STRICT node's labels, in counts
                monitor = self._deployments.for_version(request.deployment_id, model_name, counts.model_version, True)
                with monitor.lock:
                    events = self._deployments.learn_counts(monitor, counts)
                self._deployments.publish(request.deployment_id, events)
        return M.IngestFeedbackResponse(accepted_rows=accepted, summary_edges=edges)

    def ReportLabels(self, request_iterator, context):
        accepted = unmatched = 0
        namespace = self._access.label_namespace(context)
        for request in _until_gone(request_iterator):
            self._check(context, request.deployment_id)
            self._refuse_strict(request.deployment_id)
            pairs = label_pairs(request.labels, namespace)
            matched, waiting = self._store.add_labels(request.deployment_id, pairs)  # on disk from here
            accepted += len(pairs)
            unmatched += waiting
            monitor = self._deployments.get(request.deployment_id)
            if monitor is not None:
                with monitor.lock:
                    events = self._deployments.learn(monitor, matched)
                self._deployments.publish(request.deployment_id, events)
        return M.ReportLabelsResponse(accepted=accepted, unmatched=unmatched)

    def _strict(self, deployment_id: str) -> bool:
        monitor = self._deployments.get(deployment_id)
        return (monitor is not None and monitor.strict) or self._access.is_strict(deployment_id)

    def _refuse_strict(self, deployment_id: str) -> None:
        """A STRICT deployment's labels stay on its node: never stored here."""
        if self._strict(deployment_id):
            raise FailedPrecondition(
                f"deployment {deployment_id} is STRICT: its labels stay on its node; report them to its "
                "replicas (DeploymentInference.report_labels, or mlaas feedback)"
            )

    def _check(self, context, deployment_id: str, owner_only: bool = False) -> None:
        if not deployment_id:
            raise InvalidArgument("deployment_id is required")
        self._access.check(context, deployment_id, owner_only)

    def GetDriftReport(self, request, context):
        self._check(context, request.deployment_id)
        monitor = self._deployments.known(request.deployment_id)
        # STRICT: no label is here; the node's counts are what the detector has seen.
        matched = monitor.labels_seen if monitor.strict else self._store.label_count(request.deployment_id)[1]
        report = monitor.report(matched)
        report.feedback_dropped = self._deployments.dropped(request.deployment_id)
        trial = self._deployments.trials.status(request.deployment_id)
        if trial is not None:
            report.trial.CopyFrom(trial)
        recent = self._store.recent_events(request.deployment_id, RECENT_EVENTS)  # every version's
        report.recent_events.extend(M.DriftEvent.FromString(raw) for raw in recent)
        return M.GetDriftReportResponse(report=report)

    def ListDriftEvents(self, request, context):
        self._check(context, request.deployment_id)
        limit, query = page_size(request.page_size), query_key(request)
        after = decode_page_token(request.page_token, query, is_offset) or 0
        rows = self._store.events(request.deployment_id, after, limit + 1)
        response = M.ListDriftEventsResponse(events=[M.DriftEvent.FromString(raw) for _, raw in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = encode_page_token(rows[limit - 1][0], query)
        return response

    def WatchDrift(self, request, context):
        """Drift events from now on (GetDriftReport has the recent ones)."""
        self._check(context, request.deployment_id)
        seen = self._store.last_event_seq()
        while context.is_active():
            self._check(context, request.deployment_id)  # a lease dropped meanwhile ends the watch
            for seq, raw in self._store.events(request.deployment_id, seen):
                seen = seq
                yield M.WatchDriftResponse(event=M.DriftEvent.FromString(raw))
            self._changes.wait(WATCH_POLL_SECONDS)

    def SetPolicy(self, request, context):
        self._check(context, request.deployment_id, owner_only=True)
        policy = validate_policy(request.policy, self._deployments.policy(request.deployment_id))
        monitor = self._deployments.get(request.deployment_id)
        if (policy.privacy_epsilon or policy.federation) and monitor is not None and not monitor.strict:
            raise FailedPrecondition(OPEN_NOT_PRIVATE.format(request.deployment_id))
        before = self._deployments.policy(request.deployment_id)
        if (policy.privacy_epsilon, policy.privacy_budget) != (before.privacy_epsilon, before.privacy_budget):
            token = bearer_token(context.invocation_metadata())  # the owner's: the terms are its to set
            self._privacy.state(request.deployment_id, policy.privacy_epsilon, policy.privacy_budget, token)
        self._store.set_federation(request.deployment_id, self._access.tenant(context), policy.federation)
        self._deployments.set_policy(request.deployment_id, policy)
        return M.SetPolicyResponse(policy=policy)

    def GetPolicy(self, request, context):
        self._check(context, request.deployment_id)
        return M.GetPolicyResponse(policy=self._deployments.policy(request.deployment_id))

    def ListRetrainings(self, request, context):
        self._check(context, request.deployment_id)
        found = [M.Retraining.FromString(r) for r in self._store.retrainings(request.deployment_id)]
        return M.ListRetrainingsResponse(retrainings=found)

    def WatchRetraining(self, request, context):
        """The deployment's retrainings as they are now, then every state each one goes through."""
        self._check(context, request.deployment_id)
        seen = self._store.retraining_log_end()
        sent: dict[str, bytes] = {}

        def fresh(raw: bytes):
            record = M.Retraining.FromString(raw)
            if sent.get(record.id) != raw:
                sent[record.id] = raw
                yield M.WatchRetrainingResponse(retraining=record)

        for raw in self._store.retrainings(request.deployment_id):
            yield from fresh(raw)
        while context.is_active():
            self._check(context, request.deployment_id)  # a lease dropped meanwhile ends the watch
            changes = self._store.retraining_changes(request.deployment_id, seen)
            for seq, raw in changes:
                seen = seq
                yield from fresh(raw)
            self._changes.wait(WATCH_POLL_SECONDS)

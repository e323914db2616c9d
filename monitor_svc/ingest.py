"""Feedback and labels into the Monitor, free of transport (servicer.py adapts it, having checked
the caller): a runtime's records (rows, or a STRICT runtime's summaries and label counts, and a
trial's second answers) into the deployment's detectors and store, and an application's labels
matched with the predictions they are for. A STRICT deployment's rows and labels never come in."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from mlaas.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mlaas.services.label_store import finite_number, label_pairs
from mlaas.tensors import from_raw
from mlaas.v1 import monitor_pb2
from monitor_svc.access import check_versions
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.store import MonitorStore

M = monitor_pb2
Credential = tuple[str, set[int] | None]  # the model a runtime's credential names, and its versions (None: any)


class Ingest:
    def __init__(self, store: MonitorStore, deployments: DeploymentMonitors, is_strict: Callable[[str], bool]):
        """`is_strict(deployment_id)`: whether its record says STRICT (the scheduler's)."""
        self._store = store
        self._deployments = deployments
        self._is_strict = is_strict

    def strict(self, deployment_id: str) -> bool:
        return self._deployments.shown_strict(deployment_id) or self._is_strict(deployment_id)

    def feedback_stream(
        self, requests: Iterable[M.IngestFeedbackRequest], allowed: Callable[[M.IngestFeedbackRequest], Credential]
    ) -> M.IngestFeedbackResponse:
        """A runtime's stream, each message taken once `allowed` (which raises for a caller who may
        not feed its deployment) names the model and versions the caller's credential covers."""
        accepted, edges = 0, None
        for request in requests:
            rows, asked = self.feedback(request, *allowed(request))
            accepted, edges = accepted + rows, asked or edges
        return M.IngestFeedbackResponse(accepted_rows=accepted, summary_edges=edges)

    def labels_stream(
        self, requests: Iterable[M.ReportLabelsRequest], check: Callable[[str], None], namespace: str
    ) -> M.ReportLabelsResponse:
        """An application's labels, each message's deployment `check`ed (it raises for a caller
        who may not label it), their ids under the caller's `namespace`."""
        accepted = unmatched = 0
        for request in requests:
            check(request.deployment_id)
            taken, waiting = self.labels(request.deployment_id, label_pairs(request.labels, namespace))
            accepted, unmatched = accepted + taken, unmatched + waiting
        return M.ReportLabelsResponse(accepted=accepted, unmatched=unmatched)

    def feedback(
        self, request: M.IngestFeedbackRequest, model_name: str, versions: set[int] | None
    ) -> tuple[int, M.SummaryEdges | None]:
        """One message of a runtime's feedback stream, whose credential names `model_name` and the
        `versions` it may report (None: any); (rows accepted, the bin edges it asked for)."""
        deployment_id, accepted, edges = request.deployment_id, 0, None
        grouped, shadows = _by_version(request.records), _shadows(request.records)
        summarised = (s.model_version for s in (*request.summaries, *request.label_summaries))
        tried = (s.trial.challenger_version for s in request.label_summaries if s.HasField("trial"))
        check_versions(deployment_id, {*grouped, *shadows, *summarised, *tried} | ({request.edges_for_version} - {0}),
                       versions)  # fmt: skip
        if request.dropped:
            self._deployments.count_dropped(deployment_id, request.dropped)
        if grouped and self.strict(deployment_id):
            raise PermissionDenied(f"deployment {deployment_id} is STRICT: no row of it leaves its node")
        for version, (ids, answers) in shadows.items():  # before their labels may be matched below
            self._store.add_shadow_predictions(deployment_id, ids, version, answers)
            self._deployments.trials.shadowed(deployment_id)
        for version, (ids, inputs, predictions) in grouped.items():
            accepted += self._rows(deployment_id, model_name, version, ids, inputs, predictions)
        for summary in request.summaries:  # a STRICT runtime: counts only, never rows
            monitor = self._deployments.for_version(deployment_id, model_name, summary.model_version, True)
            with monitor.lock:
                events = monitor.observe_summary(summary)
            self._deployments.publish(deployment_id, events)
            accepted += summary.features[0].n if summary.features else 0
        if request.edges_for_version:  # a STRICT runtime's, before its first window of the version
            monitor = self._deployments.for_version(deployment_id, model_name, request.edges_for_version, True)
            edges = monitor.summary_edges()
        for counts in request.label_summaries:  # a STRICT node's labels, in counts
            monitor = self._deployments.for_version(deployment_id, model_name, counts.model_version, True)
            with monitor.lock:
                events = self._deployments.learn_counts(monitor, counts)
            self._deployments.publish(deployment_id, events)
        return accepted, edges

    def _rows(
        self, deployment_id: str, model_name: str, version: int, ids: list[str], inputs: np.ndarray,
        predictions: np.ndarray,
    ) -> int:  # fmt: skip
        """An OPEN runtime's rows of one version: one pass of the detectors, one transaction."""
        monitor = self._deployments.for_version(deployment_id, model_name, version, False)
        features = monitor.context.reference.shape[1]
        if inputs.shape[1] != features:
            raise InvalidArgument(
                f"feedback rows have {inputs.shape[1]} values; {model_name}:{version} takes {features}"
            )
        with monitor.lock:
            events = monitor.observe(inputs, predictions)
            matched = self._store.add_predictions(deployment_id, ids, version, inputs, [str(p) for p in predictions])
            events += self._deployments.learn(monitor, matched)
        self._deployments.publish(deployment_id, events)
        return inputs.shape[0]

    def labels(self, deployment_id: str, pairs: list[tuple[str, str]]) -> tuple[int, int]:
        """(request id, label) pairs of an OPEN deployment, on disk before they are matched and
        learnt from; (accepted, waiting for their prediction)."""
        if self.strict(deployment_id):
            raise FailedPrecondition(
                f"deployment {deployment_id} is STRICT: its labels stay on its node; report them to its "
                "replicas (DeploymentInference.report_labels, or mlaas feedback)"
            )
        monitor = self._deployments.get(deployment_id)
        if monitor is not None and not monitor.context.classification:
            wrong = next((label for _, label in pairs if finite_number(label) is None), None)
            if wrong is not None:
                raise InvalidArgument(f"{deployment_id} is a regression: {wrong!r} is not a finite number")
        matched, waiting = self._store.add_labels(deployment_id, pairs)  # on disk from here
        if monitor is not None:
            with monitor.lock:
                events = self._deployments.learn(monitor, matched)
            self._deployments.publish(deployment_id, events)
        return len(pairs), waiting


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

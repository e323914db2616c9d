"""A STRICT deployment's labels stay on its node: its runtimes keep their predictions (the first
input's rows, the first output, the caller's request ids) and the labels reported to them
(NodeLabelsService) in a store on the node, one SQLite file that their workers (and, during a
rollout, the old and new runtimes) share, bounded like the Monitor's. The Monitor never
receives a row, a prediction or a label: only, per window of `window` labels of the serving
version matched here, how many predictions were wrong (LabelSummary), from which it watches
performance drift as it does for OPEN deployments; during a trial, also how often the challenger
did better or worse on the same rows (TrialCount), from which it judges the trial.

The windows are cut from the store, after a durable mark of how far the counts sent so far
go, by one sender at a time (a claim in the same file): a worker that dies loses no count, and
counts are sent at least once (twice only if a sender dies between sending and marking)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from inference_svc.feedback import FeedbackRecord, refused_for_good, version_number
from inference_svc.monitor_sink import MonitorConnection, row_ids
from mlaas.errors import NotFound
from mlaas.retraining.outcomes import REGRESSION_BASELINE, Outcomes, paired_gain, targets
from mlaas.services.label_store import Labeled, LabelStore, label_pairs
from mlaas.v1 import monitor_pb2, node_pb2

log = logging.getLogger(__name__)
M = monitor_pb2

NODE_SCHEMA = """
-- how far the label counts sent to the Monitor go, and until when a sender holds the next ones
CREATE TABLE IF NOT EXISTS label_windows (
    deployment TEXT PRIMARY KEY,
    counted_up_to INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL NOT NULL DEFAULT 0
);
-- the version the deployment serves now, as the runtime last told of it says
CREATE TABLE IF NOT EXISTS serving (
    deployment TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
"""
CLAIM_SECONDS = 30.0  # a sender that died lets another go on after this long
# How often counts the request path left go anyway: windows whose claim another sender held, and
# those past one send's share, when no request or label comes to carry them.
FLUSH_SECONDS = 1.0


class NodeStore(LabelStore):
    def __init__(self, path, keep_predictions: int):
        super().__init__(path, keep_predictions, schema=NODE_SCHEMA)

    def serve(self, deployment: str, version: int) -> None:
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO serving VALUES (?, ?)", (deployment, version)))

    def claim(self, deployment: str, version: int) -> int | None:
        """The matched-label number the counts sent so far end at, the next ones now claimed by
        the caller; None while another sender holds them, or when the deployment serves another
        version than the caller's (a worker not told of a swap yet, an old runtime's during a
        rollout): the labels of the version it serves are not the caller's to count, nor to skip."""
        found: list[int] = []

        def claim(db) -> None:
            serving = db.execute("SELECT version FROM serving WHERE deployment = ?", (deployment,)).fetchone()
            if serving is not None and serving[0] != version:
                return
            db.execute("INSERT OR IGNORE INTO label_windows (deployment) VALUES (?)", (deployment,))
            up_to, until = db.execute(
                "SELECT counted_up_to, claimed_until FROM label_windows WHERE deployment = ?", (deployment,)
            ).fetchone()
            if until < time.time():
                db.execute(
                    "UPDATE label_windows SET claimed_until = ? WHERE deployment = ?",
                    (time.time() + CLAIM_SECONDS, deployment),
                )
                found.append(up_to)

        self._write(claim)
        return found[0] if found else None

    def release(self, deployment: str, counted_up_to: int | None) -> None:
        """Gives the claim back; with `counted_up_to`, the counts sent now end there."""
        statement: tuple[str, tuple[int | str, ...]]
        if counted_up_to is None:
            statement = ("UPDATE label_windows SET claimed_until = 0 WHERE deployment = ?", (deployment,))
        else:
            statement = (
                "UPDATE label_windows SET claimed_until = 0, counted_up_to = ? WHERE deployment = ?",
                (counted_up_to, deployment),
            )
        self._write(lambda db: db.execute(*statement))


def is_class_label(prediction: str) -> bool:
    """A classifier's label is an integer or a name; a regression's value a float's text."""
    try:
        int(prediction)
    except ValueError:
        try:
            float(prediction)
        except ValueError:
            return True
        return False
    return True


def trial_count(
    group: list[Labeled], shadows: dict[str, tuple[int, str]], classification: bool
) -> monitor_pb2.TrialCount | None:
    """A window's labels of rows a trial's challenger answered too (`shadows`: by request id, its
    version and answer), as counts: how many, and on how many only it or only the served version
    was right (came closer). The latest challenger's, if the trial changed within the window."""
    tried = [(x, shadows[x.request_id]) for x in group if x.request_id in shadows]
    if not tried:
        return None
    challenger = tried[-1][1][0]
    rows = [(x, answer) for x, (version, answer) in tried if version == challenger]
    gain = paired_gain(
        classification, targets([x.label for x, _ in rows], classification),
        targets([x.prediction for x, _ in rows], classification), targets([a for _, a in rows], classification),
    )  # fmt: skip
    return M.TrialCount(
        challenger_version=challenger, labels=len(rows), wins=int(np.sum(gain > 0)), losses=int(np.sum(gain < 0))
    )


class NodeLabels:
    def __init__(
        self, store: NodeStore, deployment_id: str, model_name: str, version: int, window: int = 32,
        windows_per_send: int = 64,
    ):  # fmt: skip
        """`version`: the model version this runtime serves (the latest runtime to start or swap
        says so for all of the node's); labels of others' predictions (an older version's, after a
        rollout) are kept but not counted."""
        self._store = store
        self._deployment = deployment_id
        self._model = model_name
        self._window = window
        self._per_send = windows_per_send
        self.serve(version)

    def close(self) -> None:
        self._store.close()

    def serve(self, version: int) -> None:
        """The runtime serves `version` now (a hot swap): its labels are the ones counted, and
        only by workers that know it (blocking, briefly: a swap is rare)."""
        self._version = version
        self._store.serve(self._deployment, version)

    def add_predictions(self, records: list[FeedbackRecord]) -> None:
        """Keeps answered requests' rows (blocking: run it on a thread)."""
        for record in records:
            if not record.inputs or not record.outputs:
                continue
            rows = next(iter(record.inputs.values()))
            inputs = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
            predictions = np.asarray(next(iter(record.outputs.values()))).reshape(rows.shape[0], -1)[:, 0]
            version = version_number(record.version)
            ids = row_ids(record.request_id, inputs.shape[0])
            if record.shadow_outputs:  # a trial's challenger's answers, before their labels may match
                shadow = np.asarray(next(iter(record.shadow_outputs.values()))).reshape(rows.shape[0], -1)[:, 0]
                challenger = version_number(record.shadow_version)
                self._store.add_shadow_predictions(self._deployment, ids, challenger, [str(p) for p in shadow])
            self._store.add_predictions(self._deployment, ids, version, inputs, [str(p) for p in predictions])

    async def report(
        self, requests: AsyncIterator[node_pb2.ReportNodeLabelsRequest], namespace: str,
        monitor: MonitorConnection | None,
    ) -> tuple[int, int]:  # fmt: skip
        """A caller's labels stream, each message kept (its ids under the caller's `namespace`)
        before the next is read; then the counts go if they can. (accepted, waiting for their
        prediction)."""
        accepted = waiting = 0
        async for request in requests:
            if request.deployment_id != self._deployment:
                raise NotFound(f"deployment {request.deployment_id!r} is not served here")
            stored, unmatched = await asyncio.to_thread(self.add_labels, label_pairs(request.labels, namespace))
            accepted, waiting = accepted + stored, waiting + unmatched
        if monitor is not None:
            try:
                await self.flush(monitor)
            except Exception as err:  # the labels are safe on the node; the counts go next time
                log.warning("label counts kept to send again: %s", err)
        return accepted, waiting

    def add_labels(self, pairs: list[tuple[str, str]]) -> tuple[int, int]:
        """Keeps labels (durable before it returns: run it on a thread); (accepted, waiting for
        their prediction)."""
        _, waiting = self._store.add_labels(self._deployment, pairs)
        return len(pairs), waiting

    def _windows(self, after: int) -> tuple[int, list[monitor_pb2.LabelSummary]]:
        """(where the counts end, the full windows of this version's labels matched after `after`)."""
        labeled = self._store.labeled_since(self._deployment, after, self._window * self._per_send * 4)
        mine = [x for x in labeled if x.model_version == self._version]
        if not mine:  # only another version's labels: nothing to count in them
            return (labeled[-1].number if labeled else after), []
        classification = is_class_label(mine[0].prediction)
        outcomes = Outcomes(classification)
        if not classification:  # the residuals' baseline: this version's first ones
            first = self._store.labeled_since(self._deployment, 0, REGRESSION_BASELINE, version=self._version)
            if len(first) < REGRESSION_BASELINE:
                return after, []
            outcomes.errors(first)
        windows, end = [], after
        for start in range(0, min(len(mine) // self._window, self._per_send) * self._window, self._window):
            group = mine[start : start + self._window]
            wrong = int(outcomes.errors(group).sum())
            shadows = self._store.shadow_predictions(self._deployment, [x.request_id for x in group])
            windows.append(M.LabelSummary(
                model_version=self._version, first_label=group[0].number, labels=len(group), errors=wrong,
                trial=trial_count(group, shadows, classification),
            ))  # fmt: skip
            end = group[-1].number
        return end, windows

    async def flush_forever(self, monitor: MonitorConnection) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush(monitor)
            except Exception as err:  # the Monitor away: the request path says so; try again
                log.debug("label counts kept to send again: %s", err)

    async def flush(self, monitor: MonitorConnection) -> None:
        """Sends the windows not sent yet, if no other sender is at it. Kept to send again if
        the Monitor is away; skipped (and logged) if it refuses them for good."""
        after = await asyncio.to_thread(self._store.claim, self._deployment, self._version)
        if after is None:
            return
        end = None
        try:
            end, windows = await asyncio.to_thread(self._windows, after)
            if windows:
                message = M.IngestFeedbackRequest(
                    deployment_id=self._deployment, model_name=self._model, label_summaries=windows
                )
                await monitor.ingest(message)
        except Exception as err:
            if not refused_for_good(err):
                end = None
                raise
            log.warning("the Monitor refused label counts up to %s for good; skipped: %s", end, err)
        finally:
            await asyncio.to_thread(self._store.release, self._deployment, end)

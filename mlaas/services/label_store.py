"""Predictions and the labels reported for them, matched, in SQLite (WAL, synchronous=FULL: a
commit is on disk before it returns). The Monitor keeps those of OPEN deployments in it; a STRICT
deployment's runtimes keep theirs on their node in one of their own, which several worker
processes share.

A label is committed before it is acknowledged. A label whose prediction has not arrived yet
(feedback is batched and may come later than the label) stays unmatched and is matched when the
prediction comes. Predictions are kept up to `keep_predictions` per deployment (the retraining
window; an eighth more between trims), oldest dropped first; matched labels as many, unmatched
ones as many apart (and for `unmatched_label_seconds` at most).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlaas.errors import InvalidArgument, Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    inputs BLOB NOT NULL,
    prediction TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS predictions_by_id ON predictions (deployment, request_id);
CREATE INDEX IF NOT EXISTS predictions_by_seq ON predictions (deployment, seq);
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    label TEXT NOT NULL,
    time REAL NOT NULL,
    -- the labeled-sample number once matched with its prediction (1, 2, ... per deployment)
    matched INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS labels_by_id ON labels (deployment, request_id);
CREATE INDEX IF NOT EXISTS labels_by_match ON labels (deployment, matched);
CREATE INDEX IF NOT EXISTS labels_by_seq ON labels (deployment, seq);
-- a trial's challenger's answers to the rows the served version answered (the same request ids)
CREATE TABLE IF NOT EXISTS shadow_predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    prediction TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS shadow_predictions_by_id ON shadow_predictions (deployment, request_id);
"""


def _ids_in(db: sqlite3.Connection, table: str, deployment: str, ids: Sequence[str], condition: str = "") -> set[str]:
    """Which of `ids` the deployment has rows for in `table` (only these are looked up, by index,
    so the cost follows the batch, not what has piled up)."""
    found: set[str] = set()
    for start in range(0, len(ids), 500):  # below SQLite's limit on bound parameters
        chunk = ids[start : start + 500]
        found.update(
            row[0]
            for row in db.execute(
                f"SELECT request_id FROM {table} WHERE deployment = ? AND request_id IN "
                f"({','.join('?' * len(chunk))}) {condition}",
                (deployment, *chunk),
            )
        )
    return found


MAX_LABEL_CHARS = 256
# Labels in one message (a call, or one message of a stream): each message is stored in one
# transaction that holds the store, so it must stay short whoever sends it.
MAX_LABELS_PER_MESSAGE = 10_000


def label_pairs(labels: Sequence, namespace: str) -> list[tuple[str, str]]:
    """(request id under `namespace`, label as text) of reported `Label` messages, which the
    store matches with predictions (stored as text too); InvalidArgument for one that makes no
    sense."""
    if len(labels) > MAX_LABELS_PER_MESSAGE:
        raise InvalidArgument(
            f"{len(labels)} labels in one message; send at most {MAX_LABELS_PER_MESSAGE} per message (the SDK's "
            "report_labels splits them)"
        )
    pairs = []
    for label in labels:
        kind = label.WhichOneof("value")
        if not label.request_id or kind is None:
            raise InvalidArgument("every label needs a request_id and a class_label or target")
        if len(label.request_id) > MAX_LABEL_CHARS or len(label.class_label) > MAX_LABEL_CHARS:
            raise InvalidArgument(f"a label's request_id and class_label have {MAX_LABEL_CHARS} characters at most")
        if kind == "target" and not math.isfinite(label.target):
            raise InvalidArgument(f"label {label.request_id!r}: the target must be a finite number")
        pairs.append((namespace + label.request_id, label.class_label if kind == "class_label" else repr(label.target)))
    return pairs


def finite_number(label: str) -> float | None:
    """A regression label as its number, or None when it is not a finite one."""
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Labeled:
    """A prediction with its true label, numbered in the order labels were matched."""

    number: int
    request_id: str
    model_version: int
    inputs: np.ndarray
    prediction: str
    label: str


def made_by(labeled: list[Labeled], tenant: str) -> list[Labeled]:
    """The labeled requests `tenant` made: the runtimes record each request id under its
    caller's tenant ("tenant/id"), so a shared deployment's lease holders' are told apart. All
    of them without tenancy (tenant "")."""
    return [x for x in labeled if x.request_id.startswith(f"{tenant}/")] if tenant else labeled


class LabelStore:
    """`schema`: more tables the owner keeps in the same database."""

    def __init__(
        self, path: Path, keep_predictions: int = 50_000, unmatched_label_seconds: float = 86_400.0, schema: str = ""
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: other processes may hold the write lock for a moment (a node's runtime workers)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA + schema)
        self._lock = threading.Lock()
        self._keep = keep_predictions
        self._unmatched_seconds = unmatched_label_seconds
        self._added: dict[tuple[str, str], int] = {}  # (table, deployment) -> rows added since its last trim
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    def _write(self, statements) -> None:
        with self._lock:
            if self._closed:  # a call still running while the Monitor stops
                raise Unavailable("the store is closing")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                statements(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _trim_due(self, table: str, deployment: str, added: int) -> bool:
        """Whether the deployment's rows of `table` are trimmed now: finding a cut walks an index
        that far (5 ms at 50,000), so it runs once per eighth of `keep_predictions` the deployment
        added through this store, not per batch (a table may hold an eighth more meanwhile)."""
        key = (table, deployment)
        self._added[key] = self._added.get(key, 0) + added
        if self._added[key] < max(1, self._keep // 8):
            return False
        self._added[key] = 0
        return True

    def _keep_newest(
        self, db: sqlite3.Connection, table: str, deployment: str, which: str = "", order: str = "seq"
    ) -> None:
        """Deletes all but the deployment's newest `keep_predictions` rows of `table` (`which`
        of them, newest by `order`)."""
        db.execute(
            f"DELETE FROM {table} WHERE deployment = ? {which} AND {order} <= "
            f"(SELECT {order} FROM {table} WHERE deployment = ? {which} ORDER BY {order} DESC LIMIT 1 OFFSET ?)",
            (deployment, deployment, self._keep),
        )

    def add_predictions(
        self,
        deployment: str,
        request_ids: Sequence[str],
        model_version: int,
        inputs: np.ndarray,
        predictions: Sequence[str],
    ) -> list[Labeled]:
        """Stores predictions (rows without a request id cannot be labeled and are not kept);
        returns those that complete a label that came first, now matched."""
        now = time.time()
        rows = [
            (deployment, rid, model_version, np.ascontiguousarray(x, dtype=np.float64).tobytes(), str(p), now)
            for rid, x, p in zip(request_ids, inputs, predictions, strict=True)
            if rid
        ]
        matched: list[Labeled] = []

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO predictions (deployment, request_id, model_version, inputs, prediction, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            waiting = _ids_in(db, "labels", deployment, [r[1] for r in rows], "AND matched IS NULL")
            matched.extend(self._match(db, deployment, [r[1] for r in rows if r[1] in waiting]))  # row order
            if self._trim_due("predictions", deployment, len(rows)):
                self._keep_newest(db, "predictions", deployment)

        self._write(insert)
        return matched

    def add_shadow_predictions(
        self, deployment: str, request_ids: Sequence[str], model_version: int, predictions: Sequence[str]
    ) -> None:
        """A trial challenger's answers, kept as long as the predictions they sit beside."""
        rows = [(deployment, rid, model_version, p) for rid, p in zip(request_ids, predictions, strict=True) if rid]

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO shadow_predictions (deployment, request_id, model_version, prediction) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
            if self._trim_due("shadow_predictions", deployment, len(rows)):
                self._keep_newest(db, "shadow_predictions", deployment)

        self._write(insert)

    def shadow_predictions(self, deployment: str, request_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """request id -> (version, prediction) of the challenger's answers to those requests."""
        found: dict[str, tuple[int, str]] = {}
        with self._lock:
            for start in range(0, len(request_ids), 500):  # below SQLite's limit on bound parameters
                chunk = request_ids[start : start + 500]
                found.update(
                    (rid, (version, prediction))
                    for rid, version, prediction in self._db.execute(
                        "SELECT request_id, model_version, prediction FROM shadow_predictions WHERE deployment = ? "
                        f"AND request_id IN ({','.join('?' * len(chunk))})",
                        (deployment, *chunk),
                    )
                )
        return found

    def add_labels(self, deployment: str, labels: Iterable[tuple[str, str]]) -> tuple[list[Labeled], int]:
        """Commits labels (request id, label) to disk, then matches those whose prediction is
        here. Returns (the newly matched, how many wait for their prediction: a label sent again
        for a prediction it already met does not wait)."""
        now = time.time()
        rows = [(deployment, rid, label, now) for rid, label in labels]
        matched: list[Labeled] = []
        predicted: set[str] = set()

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO labels (deployment, request_id, label, time) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (deployment, request_id) DO UPDATE SET label = excluded.label",
                rows,
            )
            known = _ids_in(db, "predictions", deployment, [r[1] for r in rows])
            predicted.update(known)
            matched.extend(self._match(db, deployment, [r[1] for r in rows if r[1] in known]))
            # Retention: a deployment keeps no more matched labels than predictions (older ones
            # have nothing to join), as many unmatched ones apart (a flood of labels for requests
            # nobody made, a lease holder's say, never pushes out matched ones or renumbers
            # them), and a label whose prediction never came goes after a while.
            if self._trim_due("labels", deployment, len(rows)):
                self._keep_newest(db, "labels", deployment, "AND matched IS NOT NULL", order="matched")
                self._keep_newest(db, "labels", deployment, "AND matched IS NULL")
                db.execute(
                    "DELETE FROM labels WHERE deployment = ? AND matched IS NULL AND time < ?",
                    (deployment, now - self._unmatched_seconds),
                )

        self._write(insert)
        return matched, sum(r[1] not in predicted for r in rows)

    def _match(self, db: sqlite3.Connection, deployment: str, request_ids: Sequence[str]) -> list[Labeled]:
        (last,) = db.execute(
            "SELECT COALESCE(MAX(matched), 0) FROM labels WHERE deployment = ?", (deployment,)
        ).fetchone()
        found = []
        for rid in request_ids:
            row = db.execute(
                "SELECT l.label, p.model_version, p.inputs, p.prediction, l.matched FROM labels l "
                "JOIN predictions p ON p.deployment = l.deployment AND p.request_id = l.request_id "
                "WHERE l.deployment = ? AND l.request_id = ?",
                (deployment, rid),
            ).fetchone()
            if row is None or row[4] is not None:
                continue
            last += 1
            db.execute("UPDATE labels SET matched = ? WHERE deployment = ? AND request_id = ?", (last, deployment, rid))
            found.append(Labeled(last, rid, row[1], np.frombuffer(row[2]), row[3], row[0]))
        return found

    def labeled_since(self, deployment: str, number: int, limit: int = -1, version: int | None = None) -> list[Labeled]:
        """Matched samples numbered above `number`, in order (the retraining window): at most
        `limit` (-1: all), of model `version` only if given."""
        of_version = "" if version is None else f"AND p.model_version = {int(version)} "
        with self._lock:
            rows = self._db.execute(
                "SELECT l.matched, l.request_id, p.model_version, p.inputs, p.prediction, l.label FROM labels l "
                "JOIN predictions p ON p.deployment = l.deployment AND p.request_id = l.request_id "
                f"WHERE l.deployment = ? AND l.matched > ? {of_version}ORDER BY l.matched LIMIT ?",
                (deployment, number, limit),
            ).fetchall()
        return [Labeled(m, rid, v, np.frombuffer(x), p, label) for m, rid, v, x, p, label in rows]

    def label_count(self, deployment: str) -> tuple[int, int]:
        """(labels stored, labels matched with a prediction)."""
        with self._lock:
            total, matched = self._db.execute(
                "SELECT COUNT(*), COUNT(matched) FROM labels WHERE deployment = ?", (deployment,)
            ).fetchone()
        return total, matched

"""What the Monitor must not lose, in SQLite (WAL, synchronous=FULL: a commit is on disk before
it returns): labels, the recent predictions they are matched with, drift events, retrainings
and policies.

A label is committed before ReportLabels acknowledges it. A label whose prediction has not
arrived yet (feedback is batched and may come later than the label) stays unmatched and is
matched when the prediction comes. Predictions are kept up to `keep_predictions` per
deployment (the retraining window), oldest dropped first.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlaas.errors import Unavailable

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
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS retrainings (
    id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    record BLOB NOT NULL,
    updated REAL NOT NULL
);
-- every state a retraining went through, for WatchRetraining
CREATE TABLE IF NOT EXISTS retraining_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    deployment TEXT PRIMARY KEY,
    record BLOB NOT NULL
);
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


@dataclass(frozen=True)
class Labeled:
    """A prediction with its true label, numbered in the order labels were matched."""

    number: int
    request_id: str
    model_version: int
    inputs: np.ndarray
    prediction: str
    label: str


class MonitorStore:
    def __init__(self, path: Path, keep_predictions: int = 50_000, unmatched_label_seconds: float = 86_400.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._keep = keep_predictions
        self._unmatched_seconds = unmatched_label_seconds
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    def _write(self, statements) -> None:
        with self._lock:
            if self._closed:  # a call still running while the Monitor stops
                raise Unavailable("the monitor is stopping")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                statements(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
            db.execute(
                "DELETE FROM predictions WHERE deployment = ? AND seq <= "
                "(SELECT seq FROM predictions WHERE deployment = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (deployment, deployment, self._keep),
            )

        self._write(insert)
        return matched

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
            # Retention: a label whose prediction never came goes after a while, and a
            # deployment keeps no more labels than predictions (older ones have nothing to join).
            db.execute(
                "DELETE FROM labels WHERE deployment = ? AND matched IS NULL AND time < ?",
                (deployment, now - self._unmatched_seconds),
            )
            db.execute(
                "DELETE FROM labels WHERE deployment = ? AND seq <= "
                "(SELECT seq FROM labels WHERE deployment = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (deployment, deployment, self._keep),
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

    def labeled_since(self, deployment: str, number: int) -> list[Labeled]:
        """Matched samples numbered above `number`, in order (the retraining window)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT l.matched, l.request_id, p.model_version, p.inputs, p.prediction, l.label FROM labels l "
                "JOIN predictions p ON p.deployment = l.deployment AND p.request_id = l.request_id "
                "WHERE l.deployment = ? AND l.matched > ? ORDER BY l.matched",
                (deployment, number),
            ).fetchall()
        return [Labeled(m, rid, v, np.frombuffer(x), p, label) for m, rid, v, x, p, label in rows]

    def label_count(self, deployment: str) -> tuple[int, int]:
        """(labels stored, labels matched with a prediction)."""
        with self._lock:
            total, matched = self._db.execute(
                "SELECT COUNT(*), COUNT(matched) FROM labels WHERE deployment = ?", (deployment,)
            ).fetchone()
        return total, matched

    def add_event(self, deployment: str, record: bytes) -> None:
        self._write(
            lambda db: db.execute("INSERT INTO events (deployment, record) VALUES (?, ?)", (deployment, record))
        )

    def events(self, deployment: str, after: int = 0, limit: int = 100) -> list[tuple[int, bytes]]:
        """(seq, record) of events after `after`, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, record FROM events WHERE deployment = ? AND seq > ? ORDER BY seq LIMIT ?",
                (deployment, after, limit),
            ).fetchall()

    def recent_events(self, deployment: str, count: int) -> list[bytes]:
        """The deployment's last `count` events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM events WHERE deployment = ? ORDER BY seq DESC LIMIT ?", (deployment, count)
            ).fetchall()
        return [r[0] for r in reversed(rows)]

    def last_event_seq(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    def put_retraining(self, retraining_id: str, deployment: str, record: bytes) -> None:
        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO retrainings (id, deployment, record, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET record = excluded.record, updated = excluded.updated",
                (retraining_id, deployment, record, time.time()),
            )
            db.execute("INSERT INTO retraining_log (deployment, record) VALUES (?, ?)", (deployment, record))

        self._write(put)

    def retraining_log_end(self) -> int:
        """Where the retraining log ends now (to follow it from there)."""
        with self._lock:
            return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM retraining_log").fetchone()[0]

    def retraining_changes(self, deployment: str, after: int) -> list[tuple[int, bytes]]:
        """(seq, record) of every state saved after `after`, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, record FROM retraining_log WHERE deployment = ? AND seq > ? ORDER BY seq",
                (deployment, after),
            ).fetchall()

    def retrainings(self, deployment: str) -> list[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM retrainings WHERE deployment = ? ORDER BY rowid", (deployment,)
            ).fetchall()
        return [r[0] for r in rows]

    def put_policy(self, deployment: str, record: bytes) -> None:
        self._write(
            lambda db: db.execute(
                "INSERT INTO policies (deployment, record) VALUES (?, ?) "
                "ON CONFLICT (deployment) DO UPDATE SET record = excluded.record",
                (deployment, record),
            )
        )

    def policy(self, deployment: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM policies WHERE deployment = ?", (deployment,)).fetchone()
        return row[0] if row else None

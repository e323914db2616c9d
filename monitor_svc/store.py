"""What the Monitor must not lose, in SQLite (WAL, synchronous=FULL: a commit is on disk before
it returns): labels and the recent predictions they are matched with (LabelStore), drift events,
retrainings, policies, federations and trials.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mlaas.services.label_store import LabelStore

SCHEMA = """
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
-- which federation each deployment is in: its owner's, by name
CREATE TABLE IF NOT EXISTS federations (
    deployment TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL
);
-- each deployment's latest trial as counted so far (monitor_svc/trials.py), as JSON
CREATE TABLE IF NOT EXISTS trials (
    deployment TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
"""


class MonitorStore(LabelStore):
    def __init__(self, path: Path, keep_predictions: int = 50_000, unmatched_label_seconds: float = 86_400.0):
        super().__init__(path, keep_predictions, unmatched_label_seconds, SCHEMA)

    def put_trial(self, deployment: str, record: str) -> None:
        self._write(
            lambda db: db.execute(
                "INSERT INTO trials (deployment, record) VALUES (?, ?) "
                "ON CONFLICT (deployment) DO UPDATE SET record = excluded.record",
                (deployment, record),
            )
        )

    def every_trial(self) -> list[tuple[str, str]]:
        """(deployment, record) of every deployment's latest trial."""
        with self._lock:
            return self._db.execute("SELECT deployment, record FROM trials").fetchall()

    def shadowed_deployments(self) -> set[str]:
        """The deployments some trial's challenger answered for."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT DISTINCT deployment FROM shadow_predictions")}

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

    def every_retraining(self) -> list[bytes]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT record FROM retrainings ORDER BY rowid").fetchall()]

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

    def set_federation(self, deployment: str, tenant: str, name: str) -> None:
        """Puts the deployment in its owner's federation `name` ("": in none)."""
        statement: tuple[str, tuple[str, ...]]
        if name:
            statement = (
                "INSERT INTO federations (deployment, tenant, name) VALUES (?, ?, ?) ON CONFLICT (deployment) "
                "DO UPDATE SET tenant = excluded.tenant, name = excluded.name",
                (deployment, tenant, name),
            )
        else:
            statement = ("DELETE FROM federations WHERE deployment = ?", (deployment,))
        self._write(lambda db: db.execute(*statement))

    def federation_of(self, deployment: str) -> str:
        """The deployment's federation as owner and name ("owner/name"); "" if it is in none."""
        with self._lock:
            row = self._db.execute(
                "SELECT tenant, name FROM federations WHERE deployment = ?", (deployment,)
            ).fetchone()
        return f"{row[0]}/{row[1]}" if row else ""

    def federation_members(self, deployment: str) -> list[str]:
        """The deployments in the same owner's federation as this one (itself first); [] if none."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.deployment FROM federations f JOIN federations mine ON mine.deployment = ? "
                "AND f.tenant = mine.tenant AND f.name = mine.name ORDER BY f.deployment",
                (deployment,),
            ).fetchall()
        members = [r[0] for r in rows]
        return [deployment, *(m for m in members if m != deployment)] if members else []

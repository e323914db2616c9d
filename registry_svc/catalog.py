"""The model catalogue in SQLite (WAL): versions, metrics, tags and aliases.

Each version row keeps the whole ModelVersion message (without aliases) plus the columns that
discovery filters and ranks on. Writers take the database lock up front (BEGIN IMMEDIATE), so
version numbers stay gapless however many threads or processes register at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.errors import InvalidArgument, NotFound, PermissionDenied
from mlaas.services.paging import decode_page_token, encode_page_token, is_offset, page_size, query_key
from mlaas.v1 import registry_pb2, types_pb2
from registry_svc.validation import tabular_input

SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    last_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES names(name),
    version INTEGER NOT NULL,
    owner TEXT NOT NULL,
    visibility INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    reference_sha256 TEXT,
    task INTEGER NOT NULL,
    family TEXT NOT NULL,
    framework TEXT NOT NULL,
    run_cpu INTEGER NOT NULL,
    run_memory INTEGER NOT NULL,
    run_gpus INTEGER NOT NULL,
    train_cpu INTEGER NOT NULL,
    train_memory INTEGER NOT NULL,
    train_gpus INTEGER NOT NULL,
    explainability INTEGER NOT NULL,
    input_features INTEGER,
    input_datatype TEXT,
    created_at REAL NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, sha256)
);
CREATE TABLE IF NOT EXISTS metrics (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    dataset TEXT NOT NULL,
    FOREIGN KEY (name, version) REFERENCES versions(name, version) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS metrics_by_version ON metrics(name, version, metric);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    tag TEXT NOT NULL,
    FOREIGN KEY (name, version) REFERENCES versions(name, version) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_by_version ON tags(name, version, tag);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES versions(name, version) ON DELETE CASCADE
);
"""


@dataclass(frozen=True)
class Caller:
    tenant: str
    # True when authentication is off: one trusted local user who sees and changes everything.
    unrestricted: bool = False
    # The monitor's role: it reads every tenant's models, and adds versions to and moves aliases
    # of existing ones on their owners' behalf (retraining); it never creates a model name,
    # deletes, or changes a model's owner or visibility.
    maintainer: bool = False
    # A runtime's or training job's credential: it reads this one NAME:VERSION and nothing else
    # (a runtime's during a trial: also version `also` of it).
    only: str = ""
    also: int = 0
    # A training job's: a round on a node fits a private or federated recipe's shared steps on
    # the model's reference data (the scheduler starts those only for the model's owner).
    reads_reference: bool = False

    def may_read_sql(self) -> tuple[str, list]:
        if self.only:
            name, _, version = self.only.rpartition(":")
            return "(v.name = ? AND v.version IN (?, ?))", [name, int(version), self.also or int(version)]
        if self.unrestricted or self.maintainer:
            return "1", []
        return "(v.visibility = ? OR v.owner = ?)", [types_pb2.VISIBILITY_PUBLIC, self.tenant]


@dataclass
class NewVersion:
    description: types_pb2.ModelDescription
    signature: types_pb2.Signature
    artifact: types_pb2.ArtifactInfo
    reference: types_pb2.ArtifactInfo | None
    reference_rows: int


class Catalog:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------------

    def _aliases(self, db: sqlite3.Connection, name: str, version: int) -> list[str]:
        rows = db.execute("SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias", (name, version))
        return [r[0] for r in rows]

    def _materialise(self, db: sqlite3.Connection, record: bytes) -> types_pb2.ModelVersion:
        model = types_pb2.ModelVersion.FromString(record)
        model.aliases.extend(self._aliases(db, model.description.name, model.version))
        return model

    def get(self, ref: types_pb2.ModelRef, caller: Caller) -> types_pb2.ModelVersion:
        db = self._connection()
        visible, params = caller.may_read_sql()
        which = ref.WhichOneof("selector")
        extra: list[int | str]
        if which == "version":
            where, extra = "v.version = ?", [ref.version]
            missing = f"{ref.name}:{ref.version}"
        elif which == "alias":
            where = "v.version = (SELECT version FROM aliases WHERE name = v.name AND alias = ?)"
            extra = [ref.alias]
            missing = f"{ref.name}@{ref.alias}"
        else:
            where, extra, missing = "1", [], ref.name
        row = db.execute(
            f"SELECT v.record FROM versions v WHERE v.name = ? AND {where} AND {visible} "
            "ORDER BY v.version DESC LIMIT 1",
            [ref.name, *extra, *params],
        ).fetchone()
        if row is None:
            raise NotFound(f"model {missing} not found")
        return self._materialise(db, row[0])

    def list(self, request: registry_pb2.ListModelsRequest, caller: Caller) -> registry_pb2.ListModelsResponse:
        db = self._connection()
        visible, params = caller.may_read_sql()
        limit = page_size(request.page_size)
        key = query_key(request)
        offset = decode_page_token(request.page_token, key, is_offset) or 0
        where = [visible]
        if request.name:
            where.append("v.name = ?")
            params.append(request.name)
        rows = db.execute(
            f"SELECT v.record FROM versions v WHERE {' AND '.join(where)} ORDER BY v.name, v.version LIMIT ? OFFSET ?",
            [*params, limit + 1, offset],
        ).fetchall()
        response = registry_pb2.ListModelsResponse(models=[self._materialise(db, r[0]) for r in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = encode_page_token(offset + limit, key)
        return response

    def find(self, request: registry_pb2.FindModelsRequest, caller: Caller) -> registry_pb2.FindModelsResponse:
        """Discovery: every visible version meeting all constraints, ranked (see README)."""
        db = self._connection()
        visible, params = caller.may_read_sql()
        where = [visible]

        def add(clause: str, *values) -> None:
            where.append(clause)
            params.extend(values)

        if request.name:
            add("v.name = ?", request.name)
        if request.task:
            add("v.task = ?", request.task)
        if request.families:
            add(f"v.family IN ({','.join('?' * len(request.families))})", *request.families)
        if request.framework:
            add("lower(v.framework) LIKE ?", request.framework.lower() + "%")
        if request.input.feature_count:
            add("v.input_features = ?", request.input.feature_count)
        if request.input.datatype:
            add("v.input_datatype = ?", request.input.datatype.upper())
        for prefix, limits in (("run", request.max_run_resources), ("train", request.max_train_resources)):
            for column, value in (
                ("cpu", limits.cpu_millicores),
                ("memory", limits.memory_bytes),
                ("gpus", limits.gpus),
            ):
                if value < 0:
                    raise InvalidArgument(f"resource limits must not be negative ({prefix} {column})")
                if value:
                    add(f"v.{prefix}_{column} <= ?", value)
        if request.min_explainability:
            add("v.explainability >= ?", request.min_explainability)
        for req in request.metrics:
            if not req.name:
                raise InvalidArgument("every metric requirement needs a name")
            clause = "EXISTS (SELECT 1 FROM metrics m WHERE m.name = v.name AND m.version = v.version "
            clause += "AND m.metric = ? AND m.value >= ?"
            values = [req.name, req.min_value]
            if req.dataset:
                clause += " AND m.dataset = ?"
                values.append(req.dataset)
            add(clause + ")", *values)
        for tag in request.tags:
            add(
                "EXISTS (SELECT 1 FROM tags t WHERE t.name = v.name AND t.version = v.version AND t.tag = ?)",
                tag,
            )

        rank_metric = request.rank_by_metric or (request.metrics[0].name if request.metrics else "")
        metric_dataset = next((m.dataset for m in request.metrics if m.name == rank_metric and m.dataset), "")
        rank_sql = "NULL"
        rank_params: list = []
        if rank_metric:
            rank_sql = "(SELECT MAX(m.value) FROM metrics m WHERE m.name = v.name AND m.version = v.version "
            rank_sql += "AND m.metric = ?" + (" AND m.dataset = ?" if metric_dataset else "") + ")"
            rank_params = [rank_metric, *([metric_dataset] if metric_dataset else [])]

        limit = page_size(request.page_size)
        key = query_key(request)
        offset = decode_page_token(request.page_token, key, is_offset) or 0
        matches = (
            f"SELECT v.*, {rank_sql} AS rank_value, "
            "ROW_NUMBER() OVER (PARTITION BY v.name ORDER BY v.version DESC) AS newest "
            f"FROM versions v WHERE {' AND '.join(where)}"
        )
        kept = "SELECT * FROM matches" + (" WHERE newest = 1" if request.latest_only else "")
        ranked = (
            f"WITH matches AS ({matches}), kept AS ({kept}) "
            "SELECT record, rank_value, COUNT(*) OVER () AS total FROM kept "
            "ORDER BY rank_value IS NULL, rank_value DESC, explainability DESC, run_memory ASC, "
            "run_cpu ASC, created_at DESC, name ASC, version DESC LIMIT ? OFFSET ?"
        )
        rows = db.execute(ranked, [*rank_params, *params, limit + 1, offset]).fetchall()
        response = registry_pb2.FindModelsResponse(total_matches=rows[0][2] if rows else 0)
        for position, (record, rank_value, _total) in enumerate(rows[:limit], start=offset + 1):
            response.results.add(
                model=self._materialise(db, record),
                rank=position,
                rank_metric_value=rank_value if rank_value is not None else 0.0,
            )
        if len(rows) > limit:
            response.next_page_token = encode_page_token(offset + limit, key)
        elif not rows and offset:
            response.total_matches = db.execute(
                f"WITH matches AS ({matches}) SELECT COUNT(*) FROM ({kept})", [*rank_params, *params]
            ).fetchone()[0]
        return response

    # -- writing -----------------------------------------------------------------------------

    def _check_owner(
        self, db: sqlite3.Connection, name: str, caller: Caller, action: str, on_behalf: bool = False
    ) -> str:
        """The tenant that will own what `caller` writes under `name`, or PermissionDenied. With
        `on_behalf`, the mesh may act on an existing name for its owner."""
        row = db.execute("SELECT owner FROM names WHERE name = ?", (name,)).fetchone()
        if caller.only or (caller.maintainer and not (on_behalf and row is not None)):
            raise PermissionDenied(f"the mesh's own identity cannot {action} {name!r}")
        if row is not None and not caller.unrestricted and not caller.maintainer and row[0] != caller.tenant:
            # The same answer whoever owns it: nothing of another tenant is told.
            raise PermissionDenied(f"model name {name!r} is not yours to {action}; choose another name")
        return row[0] if row is not None else caller.tenant

    def add_version(
        self, new: NewVersion, caller: Caller, ensure_stored: Callable[[], None]
    ) -> tuple[types_pb2.ModelVersion, bool]:
        """Inserts the next version, or returns the existing one with the same bytes.

        `ensure_stored` runs under the write lock just before the insert, so a concurrent
        `release_unreferenced` can never remove a blob that a committed row points at.
        """
        desc = new.description
        with self._write() as db:
            row = db.execute(
                "SELECT record FROM versions WHERE name = ? AND sha256 = ?", (desc.name, new.artifact.sha256)
            ).fetchone()
            if row is not None:
                self._check_owner(db, desc.name, caller, "register versions of", on_behalf=True)
                return self._materialise(db, row[0]), False
            owner = self._check_owner(db, desc.name, caller, "register versions of", on_behalf=True)
            if caller.maintainer:  # a retrained version is seen by whoever saw the model
                desc.visibility = self._latest_visibility(db, desc.name)
            ensure_stored()
            db.execute(
                "INSERT INTO names(name, owner, last_version) VALUES (?, ?, 0) ON CONFLICT(name) DO NOTHING",
                (desc.name, owner),
            )
            db.execute("UPDATE names SET last_version = last_version + 1 WHERE name = ?", (desc.name,))
            version = db.execute("SELECT last_version FROM names WHERE name = ?", (desc.name,)).fetchone()[0]
            now = time.time()
            created = Timestamp()
            created.FromNanoseconds(int(now * 1e9))
            model = types_pb2.ModelVersion(
                description=desc,
                version=version,
                signature=new.signature,
                artifact=new.artifact,
                reference_rows=new.reference_rows,
                created_at=created,
                owner=owner,
            )
            if new.reference is not None:
                model.reference_data.CopyFrom(new.reference)
            tabular = tabular_input(new.signature)
            run, train = desc.run_resources, desc.train_resources
            db.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    desc.name,
                    version,
                    owner,
                    desc.visibility,
                    new.artifact.sha256,
                    new.reference.sha256 if new.reference else None,
                    desc.task,
                    desc.family,
                    desc.framework,
                    run.cpu_millicores,
                    run.memory_bytes,
                    run.gpus,
                    train.cpu_millicores,
                    train.memory_bytes,
                    train.gpus,
                    desc.explainability.level,
                    tabular[0] if tabular else None,
                    tabular[1] if tabular else None,
                    now,
                    model.SerializeToString(),
                ),
            )
            db.executemany(
                "INSERT INTO metrics VALUES (?,?,?,?,?)",
                [(desc.name, version, m.name, m.value, m.dataset) for m in desc.metrics],
            )
            db.executemany("INSERT INTO tags VALUES (?,?,?)", [(desc.name, version, t) for t in desc.tags])
            return model, True

    @staticmethod
    def _latest_visibility(db: sqlite3.Connection, name: str) -> types_pb2.Visibility:
        row = db.execute(
            "SELECT visibility FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
        ).fetchone()
        return row[0] if row is not None else types_pb2.VISIBILITY_PRIVATE

    def set_alias(self, name: str, alias: str, version: int, caller: Caller) -> types_pb2.ModelVersion:
        with self._write() as db:
            visible, params = caller.may_read_sql()
            row = db.execute(
                f"SELECT v.record FROM versions v WHERE v.name = ? AND v.version = ? AND {visible}",
                [name, version, *params],
            ).fetchone()
            if row is None:
                raise NotFound(f"model {name}:{version} not found")
            self._check_owner(db, name, caller, "set aliases on", on_behalf=True)
            db.execute(
                "INSERT INTO aliases(name, alias, version) VALUES (?, ?, ?) "
                "ON CONFLICT(name, alias) DO UPDATE SET version = excluded.version",
                (name, alias, version),
            )
            return self._materialise(db, row[0])

    def check_deletable(self, name: str, version: int, caller: Caller) -> None:
        """NotFound or PermissionDenied unless `caller` may delete the version (before asking guards)."""
        self.get(types_pb2.ModelRef(name=name, version=version), caller)
        self._check_owner(self._connection(), name, caller, "delete versions of")

    def delete(
        self, name: str, version: int, caller: Caller, delete_blob: Callable[[str], None]
    ) -> types_pb2.ModelVersion:
        """Removes the version's rows (its aliases go with it) and the blobs only it used."""
        with self._write() as db:
            model = self.get(types_pb2.ModelRef(name=name, version=version), caller)
            self._check_owner(db, name, caller, "delete versions of")
            db.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, version))
            self._release(db, [model.artifact.sha256, model.reference_data.sha256], delete_blob)
            return model

    def release_unreferenced(self, digests: Iterable[str], delete_blob: Callable[[str], None]) -> None:
        """Deletes, under the write lock, each blob that no version references."""
        with self._write() as db:
            self._release(db, digests, delete_blob)

    @staticmethod
    def _release(db: sqlite3.Connection, digests: Iterable[str], delete_blob: Callable[[str], None]) -> None:
        for digest in digests:
            if not digest:
                continue
            row = db.execute(
                "SELECT 1 FROM versions WHERE sha256 = ? OR reference_sha256 = ? LIMIT 1", (digest, digest)
            ).fetchone()
            if row is None:
                delete_blob(digest)

    def referenced_digests(self) -> set[str]:
        rows = self._connection().execute("SELECT sha256, reference_sha256 FROM versions")
        return {d for row in rows for d in row if d}

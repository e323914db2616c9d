"""When each stage of a training job or a retraining round ended (StageTime), so that the loop
says where its time goes: the job's program notes its own stages in a small file of its
directory (STAGES), which the scheduler reads into the job's record beside its own."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable
from pathlib import Path

from mlaas.v1 import types_pb2

MAX_STAGES_BYTES = 4 << 10  # a few names and times
MAX_STAGES = 32


def stage_time(stage: str, at: float | None = None) -> types_pb2.StageTime:
    """`stage` ended at `at` (seconds since the epoch; now if not given)."""
    stamp = types_pb2.StageTime(stage=stage)
    stamp.at.FromNanoseconds(int((time.time() if at is None else at) * 1e9))
    return stamp


class StageClock:
    """The stages a job's program notes, written at its end for the scheduler."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    def mark(self, stage: str) -> None:
        self.times.append((stage, time.time()))

    def write(self, path: Path) -> None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.times))
        partial.replace(path)


def read_stages(path: Path) -> list[types_pb2.StageTime]:
    """What a job noted (nothing if it noted nothing, or something that is not a short list of
    (name, time) pairs: a job's file is never trusted beyond that)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_STAGES_BYTES + 1)
        noted = json.loads(raw) if len(raw) <= MAX_STAGES_BYTES else []
    except (OSError, ValueError):
        return []
    if not isinstance(noted, list):
        return []
    latest = time.time() + 60  # a job's own times are past ones (with some clock skew); not inf, not 1e12
    found = []
    for entry in noted[:MAX_STAGES]:
        if not (isinstance(entry, list) and len(entry) == 2):
            continue
        stage, at = entry
        if isinstance(stage, str) and len(stage) <= 64 and isinstance(at, int | float) and 0 < at <= latest:
            found.append(stage_time(stage, at))
    return found


def durations(stages: Iterable[types_pb2.StageTime]) -> list[tuple[str, float]]:
    """(stage, seconds since the stage before it) of each stage after the first."""
    ordered = list(stages)
    return [
        (later.stage, (later.at.ToNanoseconds() - earlier.at.ToNanoseconds()) / 1e9)
        for earlier, later in itertools.pairwise(ordered)
    ]

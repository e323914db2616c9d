"""What a job notes of its own stages, and what the scheduler takes of it: a job's file is never
trusted beyond a short list of (name, past time) pairs, so a job (or anyone who can write in its
directory) cannot make the job watcher fail or record nonsense."""

from __future__ import annotations

import json
import time

from mlaas.retraining.stages import MAX_STAGES, MAX_STAGES_BYTES, StageClock, durations, read_stages


def test_a_jobs_stages_are_read_back_in_order(tmp_path):
    clock = StageClock()
    for stage in ("ready", "fitted", "exported"):
        clock.mark(stage)
    clock.write(tmp_path / "stages.json")
    read = read_stages(tmp_path / "stages.json")
    assert [s.stage for s in read] == ["ready", "fitted", "exported"]
    assert [stage for stage, _ in durations(read)] == ["fitted", "exported"]
    assert all(seconds >= 0 for _, seconds in durations(read))


def test_a_bad_stages_file_gives_only_its_sane_entries(tmp_path):
    now = time.time()
    path = tmp_path / "stages.json"
    path.write_text(json.dumps([
        ["fitted", 1e12], ["far", 1e400], ["negative", -5], ["text", "soon"], ["x" * 65, now], "not a pair",
        [1, now], ["ok", now - 1], ["nested", [now]],
    ]))  # fmt: skip
    assert [s.stage for s in read_stages(path)] == ["ok"]
    path.write_text(json.dumps([["many", now]] * (MAX_STAGES + 10)))
    assert len(read_stages(path)) == MAX_STAGES
    path.write_text(json.dumps([["big", now]]) + " " * MAX_STAGES_BYTES)
    assert read_stages(path) == []
    for junk in ("{not json", '{"a": 1}', "null"):
        path.write_text(junk)
        assert read_stages(path) == []
    assert read_stages(tmp_path / "missing.json") == []

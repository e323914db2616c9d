"""The committed stubs are exactly what the pinned generator makes from protos/."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh, "the generator wrote nothing"
    stale = [str(p) for p in fresh if (REPO / p).read_bytes() != (tmp_path / p).read_bytes()]
    assert stale == [], f"stubs differ from protos/: run `make protos` ({stale})"
    for package in ("mlaas/v1", "mlaas/oip"):
        committed = {p.relative_to(REPO) for p in (REPO / package).glob("*_pb2*.py*")}
        assert committed == {p for p in fresh if str(p).startswith(package) and "_pb2" in p.name}

"""The committed stubs are exactly what the pinned generator makes from protos/, and lint's
`buf breaking` (scripts/buf_breaking.sh) refuses a commit that breaks the wire contract."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.spawns  # see pyproject.toml


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


def _git(repo, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


def _breaking(repo) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "scripts" / "buf_breaking.sh"), str(REPO / "node_modules" / ".bin" / "buf")],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_commit_that_removes_an_rpc_fails_lint_and_one_that_adds_a_field_does_not(tmp_path):
    """On a clone of main the old check compared the tree with itself; this one compares with
    the previous commit and the latest release tag."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "buf.yaml", repo)
    shutil.copytree(REPO / "protos", repo / "protos")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "protos")
    _git(repo, "tag", "v0.1.0")
    scheduler = repo / "protos" / "mlaas" / "v1" / "scheduler.proto"
    text = scheduler.read_text()

    scheduler.write_text(
        text.replace("  string tenant = 11;\n", "  string tenant = 11;\n  string added_field = 99;\n", 1)
    )
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "a new field")
    added = _breaking(repo)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "previous commit" in added.stdout and "latest release, v0.1.0" in added.stdout

    removed = scheduler.read_text().replace("  rpc ListNodes(", "  // gone\n  rpc ListNodesGone(", 1)
    scheduler.write_text(removed)
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "an rpc renamed")
    refused = _breaking(repo)
    assert refused.returncode != 0
    assert "ListNodes" in refused.stdout + refused.stderr

"""Where a caller on the scheduler's machine puts a training job's input file (RunTrainingJob's
input_uri; others send the data in the request): a directory of its own in the jobs directory,
`inputs/<tenant>/`, and the jobs directory itself on a mesh without auth, whose one caller is
everyone. The scheduler takes a file only from the caller's own directory, so that no tenant
can train on, and take away, a file another one wrote by naming it first."""

from __future__ import annotations

import re
from pathlib import Path

from mlaas.errors import InvalidArgument

_PATH_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def inputs_dir(jobs_dir: Path, tenant: str) -> Path:
    """The directory `tenant`'s input files must be in ("" is the tenant of a mesh without auth)."""
    if not tenant:
        return jobs_dir
    if not _PATH_SAFE.fullmatch(tenant):
        raise InvalidArgument(
            f"the tenant name {tenant!r} cannot name a directory: training jobs with input files need tenant "
            "names of letters, digits, '.', '_' and '-' in the tokens file"
        )
    return jobs_dir / "inputs" / tenant

"""A training job's input: the bytes in the request, or a file taken from the caller's own inputs directory
(mlaas/services/job_inputs.py) without a race: the directory and the file are opened once, never
through a link (O_NOFOLLOW, the file by its bare name relative to the directory's descriptor), the
file must be regular with no other link (a hard link to another tenant's file is refused), and
its bytes are copied from that descriptor into the job's private directory. Swapping the name for
a link after the check changes nothing: what was checked is what is copied. The caller's file is
removed once the job is placed, and only if its name still points at what was copied."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlaas.errors import InvalidArgument
from mlaas.services.job_inputs import inputs_dir

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


@dataclass(frozen=True)
class JobInput:
    """What a caller gives a job (RunTrainingJob's input_uri or input_data): one, or neither."""

    uri: str = ""
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.uri and self.data:
            raise InvalidArgument("give a job's input once: input_uri or input_data, not both")

    def __bool__(self) -> bool:
        return bool(self.uri or self.data)

    def take(self, jobs_dir: Path, target: Path, tenant: str, max_bytes: int) -> Callable[[], None]:
        """Writes the input to `target` (in the job's private directory); returns what removes
        the caller's file once the job is placed."""
        if self.uri:
            return take_input(jobs_dir, self.uri, target, tenant, max_bytes)
        if len(self.data) > max_bytes:
            raise InvalidArgument(
                f"input_data is {len(self.data)} bytes, over the {max_bytes} a job's input may be "
                "(MLAAS_MAX_INPUT_BYTES)"
            )
        with open(target, "xb") as copy:
            copy.write(self.data)
        return lambda: None


def take_input(jobs_dir: Path, uri: str, target: Path, tenant: str, max_bytes: int) -> Callable[[], None]:
    """Copies the caller's file `uri` to `target`, refusing one over `max_bytes` (a sparse file
    costs its caller nothing and the copy its full size); returns what removes the caller's file."""
    mine = inputs_dir(jobs_dir, tenant)
    not_mine = InvalidArgument(f"input_uri {uri} is not a file directly in your inputs directory {mine}")
    if not uri.startswith("file://"):
        raise InvalidArgument(f"input_uri must be a file:// URI of a file in your inputs directory {mine}")
    path = uri.removeprefix("file://")
    name = os.path.basename(path)
    if ".." in Path(path).parts or os.path.abspath(os.path.dirname(path)) != os.path.abspath(mine) or not name:
        raise not_mine
    try:
        directory = os.open(mine, _DIRECTORY)
    except OSError:
        raise not_mine from None
    try:
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        raise not_mine from None
    finally:
        os.close(directory)
    taken = os.fstat(source)
    if not stat.S_ISREG(taken.st_mode) or taken.st_nlink != 1:
        os.close(source)
        raise InvalidArgument(f"input_uri {uri} must be a regular file with no other link to it")
    too_big = InvalidArgument(
        f"input_uri {uri} is over {max_bytes} bytes, the most a job's input may be (MLAAS_MAX_INPUT_BYTES)"
    )
    if taken.st_size > max_bytes:
        os.close(source)
        raise too_big
    with os.fdopen(source, "rb") as data, open(target, "xb") as copy:
        copied = 0  # the file may grow while it is read
        while chunk := data.read(min(1 << 20, max_bytes + 1 - copied)):
            copied += copy.write(chunk)
            if copied > max_bytes:
                raise too_big

    def remove_callers_file() -> None:
        with contextlib.suppress(OSError):
            directory = os.open(mine, _DIRECTORY)
            try:
                now = os.stat(name, dir_fd=directory, follow_symlinks=False)
                if (now.st_dev, now.st_ino) == (taken.st_dev, taken.st_ino):
                    os.unlink(name, dir_fd=directory)
            finally:
                os.close(directory)

    return remove_callers_file

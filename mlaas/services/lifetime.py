"""A mesh process goes when whoever started it goes (`mlaas up`, a runtime's main process), so that
none is left holding the mesh's ports. Nothing runs in Python between fork and exec to arrange it
(unsafe in a parent that already runs gRPC's threads): the starter names itself in the child's
environment and the child asks the kernel itself, first thing."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_ENV = "MLAAS_DIE_WITH_PARENT"  # the pid of the process a child goes with


def die_with_parent(parent_pid: int) -> None:
    """Asks the kernel for SIGTERM when the parent dies (Linux), in the child itself. If the
    parent died before the request took effect, the child goes at once."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def die_with_starter() -> None:
    """die_with_parent for the starter this process's environment names, if it names one (taken
    out of it: this process's own children go with this process, not with its starter)."""
    parent = os.environ.pop(PARENT_ENV, "")
    if parent.isdigit():
        die_with_parent(int(parent))


def starter_env() -> dict[str, str]:
    """What a child needs in its environment to go with this process."""
    return {PARENT_ENV: str(os.getpid())}

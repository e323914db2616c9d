"""Work the Monitor does beside its calls, at a priority that leaves the CPU to them."""

from __future__ import annotations

import contextlib
import os
import threading


def background_priority() -> None:
    """The calling thread yields the CPU to the process's others (Linux: nice is per thread)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def warm_up_judging() -> None:
    """Imports what judging a round needs (ONNX Runtime for the champion's answers, SciPy's paired
    tests), in the background once the Monitor serves: its start does not wait for them, nor does
    its first round (about a second on a busy machine)."""

    def warm() -> None:
        background_priority()
        import onnxruntime  # noqa: F401
        from scipy.stats import binomtest, wilcoxon  # noqa: F401

    threading.Thread(target=warm, name="warm-up-judging", daemon=True).start()

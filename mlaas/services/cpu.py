"""How many CPUs this process may use: the cgroup quota if there is one, else its affinity."""

from __future__ import annotations

import math
import os
from pathlib import Path


def cpu_limit() -> int:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.floor(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, len(os.sched_getaffinity(0)))

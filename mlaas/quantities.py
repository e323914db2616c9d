"""Kubernetes-style resource quantities: "500m" CPU, "256Mi" memory."""

from __future__ import annotations

import re

_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?\s*$")
_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")


def parse_memory(text: str | int) -> int:
    """Bytes in a memory quantity such as 268435456, "256Mi" or "1.5G"."""
    if isinstance(text, int):
        return text
    match = _MEMORY.match(text)
    if not match:
        raise ValueError(f"not a memory quantity: {text!r} (examples: 512Mi, 2Gi, 1G)")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])


def parse_cpu(text: str | int | float) -> int:
    """Millicores in a CPU quantity such as "500m", "2" or 0.5."""
    if isinstance(text, int | float):
        return round(float(text) * 1000)
    match = _CPU.match(text)
    if not match:
        raise ValueError(f"not a CPU quantity: {text!r} (examples: 500m, 2, 0.25)")
    value = float(match.group(1))
    return round(value if match.group(2) else value * 1000)


def format_memory(n: int) -> str:
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        size = _MEMORY_UNITS[unit]
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    if n >= 2**20:
        return f"{n / 2**20:.1f}Mi"
    return str(n)


def format_cpu(millicores: int) -> str:
    return f"{millicores // 1000}" if millicores % 1000 == 0 else f"{millicores}m"

"""Kubernetes resource quantities, parsed as Kubernetes parses them ("500m" CPU, "256Mi",
"1e3", "2Pi" memory): a decimal number, then a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal one
(n u m k M G T P E) or a decimal exponent (e3, E-2). Values are exact (Decimal) and, as
Kubernetes does, rounded up to the unit the mesh counts in (bytes, millicores)."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}  # fmt: skip
_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE]?)\s*$")


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity; ValueError when it is not one."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
        if suffix in _BINARY:
            return value * _BINARY[suffix]
        if suffix[:1] in ("e", "E"):
            return value.scaleb(int(suffix[1:]))
        return value * _DECIMAL[suffix]
    except (InvalidOperation, OverflowError):
        raise ValueError(f"not a quantity: {text!r}") from None


def _whole(value: Decimal, text: str) -> int:
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return math.ceil(value)


def parse_memory(text: str | int) -> int:
    """Bytes in a memory quantity such as 268435456, "256Mi", "1.5G" or "1e9"."""
    if isinstance(text, int):
        return text
    try:
        value = parse_quantity(text)
    except ValueError:
        raise ValueError(f"not a memory quantity: {text!r} (examples: 512Mi, 2Gi, 1G, 1e9)") from None
    return _whole(value, text)


def parse_cpu(text: str | int | float) -> int:
    """Millicores in a CPU quantity such as "500m", "2" or 0.5."""
    if isinstance(text, int | float):
        return round(float(text) * 1000)
    try:
        value = parse_quantity(text)
    except ValueError:
        raise ValueError(f"not a CPU quantity: {text!r} (examples: 500m, 2, 0.25)") from None
    return _whole(value * 1000, text)


def format_memory(n: int) -> str:
    """Bytes in the largest binary unit they reach: exact when they are a multiple of it,
    else to one decimal ("23.5Gi"), so that figures side by side share a unit."""
    for unit in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        size = _BINARY[unit]
        if n >= size:
            return f"{n // size}{unit}" if n % size == 0 else f"{n / size:.1f}{unit}"
    return str(n)


def format_cpu(millicores: int) -> str:
    return f"{millicores // 1000}" if millicores % 1000 == 0 else f"{millicores}m"

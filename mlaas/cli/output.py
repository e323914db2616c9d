"""Printing for the CLI: readable tables, or JSON with --json."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message


def to_dict(message: Message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    elif isinstance(value, list):
        value = [to_dict(v) if isinstance(v, Message) else v for v in value]
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        print("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class ProgressBar:
    """An upload progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, width: int = 30):
        self.label = label
        self.width = width
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = int(self.width * done / total)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done / 2**20:7.1f}/{total / 2**20:.1f} MiB"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

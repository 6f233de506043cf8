"""The dither ledger: one JSON line per dither cycle, flushed to disk at once.

A power loss can cut the last line short. The next record then starts on a line of its
own (appended to the stump it would be unreadable too), and readers skip a line that is
not a record and count it, instead of failing or silently losing what follows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class LedgerContents:
    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    """Lines that are not a JSON object (torn by a crash, or edited by hand)."""


class JsonlLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._ends_with_newline: bool | None = None
        """Known after our first write; before it, the file's last byte says."""

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self.path.open("a+b") as f:
            if self._ends_with_newline is None:
                self._ends_with_newline = _ends_with_newline(f)
            if not self._ends_with_newline:
                line = "\n" + line  # the torn line stays torn; this record stays whole
            self._ends_with_newline = False  # until the write below is known complete
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            self._ends_with_newline = True

    def read(self) -> list[dict[str, Any]]:
        """Every well-formed record (see ``contents`` for how many lines were not)."""
        return self.contents().records

    def contents(self) -> LedgerContents:
        return read_ledger(self.path)


def _ends_with_newline(f: Any) -> bool:
    f.seek(0, os.SEEK_END)
    if f.tell() == 0:
        return True
    f.seek(-1, os.SEEK_END)
    last: bytes = f.read(1)
    f.seek(0, os.SEEK_END)
    return last == b"\n"


def read_ledger(path: Path) -> LedgerContents:
    out = LedgerContents()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            out.records.append(obj)
        else:
            out.bad_lines += 1
    return out

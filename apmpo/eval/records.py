"""The per-sample records file of an evaluation: append-only JSONL that survives a kill.

One line per sample, keyed by ``(benchmark, example_index, sample_index)``. Writing:
each finished batch is appended as complete lines, all or nothing
(:func:`apmpo.io.append_text`: an append that fails part-way is cut back), then
``fsync``-ed, so after a crash the file holds every earlier batch whole plus, after a
kill mid-write, at most one partly written line at the end. Reading (:meth:`RecordsFile.load`): a last line
without its newline is the remnant of such a kill; it is cut off (the file is
truncated to the last complete line, so the next append starts on a fresh line) and
its sample is generated again. A malformed line anywhere else is corruption the
harness did not cause and raises ValueError naming the file and line. A key seen twice
keeps its first record (a warning names the line), so a summary never counts a sample
twice.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from apmpo.io import append_text

__all__ = ["REQUIRED_FIELDS", "RecordsFile", "record_key"]

REQUIRED_FIELDS = ("benchmark", "example_index", "sample_index")


def record_key(record: Mapping[str, Any]) -> tuple[str, int, int]:
    """``(benchmark, example_index, sample_index)`` of a record."""
    return (record["benchmark"], record["example_index"], record["sample_index"])


def _plain(value: Any) -> Any:
    """JSON form of numpy / torch scalars and arrays; ``str`` of anything else."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class RecordsFile:
    """An append-only JSONL file of sample records (see the module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self, *, repair: bool = True) -> dict[tuple[str, int, int], dict]:
        """All complete records by key, in file order; a torn last line is dropped.

        With ``repair=True`` the torn tail is also removed from the file on disk.
        Returns an empty dict when the file does not exist.
        """
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if end < len(data) and repair:
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
        records: dict[tuple[str, int, int], dict] = {}
        for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(
                    f"{self.path}: line {lineno}: malformed record ({exc}); the file is corrupt "
                    "beyond a torn last line: repair or delete it, or choose another output directory"
                ) from None
            if not isinstance(record, dict) or any(name not in record for name in REQUIRED_FIELDS):
                raise ValueError(
                    f"{self.path}: line {lineno}: not a sample record (needs the fields {', '.join(REQUIRED_FIELDS)})"
                )
            key = record_key(record)
            if key in records:
                warnings.warn(
                    f"{self.path}: line {lineno}: duplicate record for {key}; keeping the first",
                    stacklevel=2,
                )
                continue
            records[key] = record
        return records

    def append(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append records as complete lines, all or nothing, then fsync; returns the count.

        A failed append (full disk, I/O error, a stop signal mid-write) is cut back, so the
        file keeps exactly the records of the earlier batches; a storage failure raises
        :class:`apmpo.io.StorageError` naming the file and the bytes the batch needs.
        """
        lines = [
            json.dumps(dict(record), ensure_ascii=False, allow_nan=False, default=_plain) + "\n" for record in records
        ]
        if not lines:
            return 0
        append_text(self.path, "".join(lines), fsync=True)
        return len(lines)

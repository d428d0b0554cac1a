"""Helpers shared by the test folders, each defined once: the tiny model, JSON lines files.

Real benchmark files are the copies shipped with the package (``apmpo.data.shipped_path``), so the tests
that read them always run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_MODEL = "tiny:num_hidden_layers=1,hidden_size=32,intermediate_size=64"
"""A one-layer random Llama with a character tokenizer (apmpo.models.tiny): seconds to train."""


def write_jsonl(path: Path, rows: list[Any], raw_lines: tuple[str, ...] = ()) -> Path:
    """One JSON object per line (a string row is written as it is, then ``raw_lines``); parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join([*lines, *raw_lines]) + "\n", encoding="utf-8")
    return path

"""Helpers shared by the test folders, each defined once: the tiny model, JSON lines files, the shared data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

TINY_MODEL = "tiny:num_hidden_layers=1,hidden_size=32,intermediate_size=64"
"""A one-layer random Llama with a character tokenizer (apmpo.models.tiny): seconds to train."""

SHARED_DATA = Path(os.environ.get("APMPO_SHARED_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
"""The development copies of the real benchmark files: ``../shared/data`` beside the repository (or
``$APMPO_SHARED_DATA``). The package never reads it; tests that do skip, saying why, when it is absent."""


def shared_file(relative: str) -> Path:
    """A file of the shared data folder; the test is skipped when it is not there."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared benchmark file {relative} is not present (looked in {SHARED_DATA})")
    return path


def write_jsonl(path: Path, rows: list[Any], raw_lines: tuple[str, ...] = ()) -> Path:
    """One JSON object per line (a string row is written as it is, then ``raw_lines``); parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join([*lines, *raw_lines]) + "\n", encoding="utf-8")
    return path

"""Real benchmark answers from the data files shipped with apmpo, and answer perturbations.

Used by the real-data tests and by ``benchmarks/bench_rewards.py``. The files are the
package's own copies (``apmpo/data/datasets``, see its README), so these tests always run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from apmpo.data.shipped import SHIPPED_DIR

DATA_DIR = SHIPPED_DIR
"""Folder with ``math500/test.jsonl``, ``gsm8k/test.jsonl``, ... (the shipped copies)."""

_INTEGER = re.compile(r"\d+")


def data_file(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``"math500/test.jsonl"`` (FileNotFoundError when it is not shipped)."""
    path = DATA_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a shipped data file")
    return path


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def perturb_answer(answer: str) -> str:
    """A different value: the first integer in the answer plus one, else the answer plus 1.

    ``\\frac{1}{2}`` -> ``\\frac{2}{2}``, ``52_8`` -> ``53_8`` (changing a base subscript or
    a unit's exponent would not change the value math-verify sees),
    ``\\text{Evelyn}`` -> ``\\text{Evelyn}+1``.
    """
    match = _INTEGER.search(answer)
    if match is None:
        return answer + "+1"
    return answer[: match.start()] + str(int(match.group()) + 1) + answer[match.end() :]

"""Real benchmark answers from the shared data folder, and answer perturbations.

Used by the real-data tests (which skip when the folder is absent) and by
``benchmarks/bench_rewards.py``. The folder defaults to ``../shared/data`` beside the
repository and can be moved with the ``APMPO_SHARED_DATA`` environment variable.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import SHARED_DATA

DATA_DIR = SHARED_DATA

_INTEGER = re.compile(r"\d+")


def data_file(relative: str) -> Path | None:
    """Path of a shared data file, or None when it is not there."""
    path = DATA_DIR / relative
    return path if path.is_file() else None


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

r"""Math answer reward: final answer extracted, compared by mathematical equivalence.

``math_accuracy(completions, answer, **options) -> list[float | None]``: 1.0 when the
completion's final answer (see :mod:`apmpo.rewards.extract`) is equivalent to the gold
``answer`` according to Hugging Face's math-verify (gold first: ``verify(gold, pred)``),
0.0 otherwise, None when the gold answer is missing. This is the paper's binary
rule-based reward for the math tasks (arXiv 2605.04066, section on the setting).

Safety: math-verify parses with sympy, which can hang or exhaust memory on hostile
input (``\boxed{10^{10^{10^{10}}}}``). Parsing and comparison therefore never run in
the calling process: they run in the shared ``"math"`` worker pool
(:mod:`apmpo.rewards.pool`) with a per-item time budget (``timeout_s``) and a memory
limit (``memory_mb``); math-verify's own signal-based timeouts are disabled. Before any
item reaches a worker its completion is cut to its last ``window`` characters and an
extracted answer longer than ``max_answer_chars`` scores 0. There is no in-process
mode: sympy on untrusted input is not safe to run in the caller (our choice).

Fast path (our choice, ``fast_path=True``): when the extracted answer is the same
string as the gold (whitespace-normalised), or both are plain integers, the verdict
is decided in process without sympy -- identical strings are equivalent, and two
integer literals are equivalent exactly when their values are equal. Identical
(gold, answer) pairs within a batch are checked once.

Gold answers may be given as strings, ints or floats (``70.0`` -> ``"70"``); a gold
string holding a worked solution is reduced to its last ``\boxed{}`` or its
``#### X`` answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import RewardFunction, RewardResult, column, short
from .extract import (
    DEFAULT_WINDOW,
    _check_extractors,
    extract_answer_with_source,
    extract_boxed,
    extract_gsm8k,
    value_text,
)
from .pool import default_workers, get_pool

__all__ = ["MathOptions", "gold_answer_text", "math_accuracy"]

_INTEGER = re.compile(r"[-+]?\d{1,4000}")
_SPACES = re.compile(r"\s+")


def _check_positive(name: str, value: Any, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value > 0:
        raise ValueError(f"{name}: expected a positive {'number' if kind is float else 'integer'}, got {value!r}")


@dataclass(frozen=True)
class MathOptions:
    """Settings of :func:`math_accuracy`."""

    extractors: tuple[str, ...] = ("boxed", "gsm8k", "answer")
    """Answer extractors tried in order (names from ``apmpo.rewards.EXTRACTORS``)."""
    last_number: bool = False
    """Fall back to the last number of the completion (off: LaTeX answers are rarely plain numbers)."""
    window: int = DEFAULT_WINDOW
    """Characters at the end of a completion searched for the answer."""
    max_answer_chars: int = 1_000
    """Extracted answers longer than this score 0 without being parsed."""
    timeout_s: float = 5.0
    """Time budget of one (gold, answer) check in a worker; overrunning scores 0."""
    workers: int | None = None
    """Worker processes; None = ``min(2, cpu_count)``."""
    memory_mb: int | None = 2048
    """Address-space limit of each worker in MiB (None: unlimited)."""
    float_rounding: int = 6
    """math-verify ``float_rounding``: decimal places floats are rounded to."""
    numeric_precision: int = 15
    """math-verify ``numeric_precision``: significant digits of numeric comparisons."""
    strict: bool = True
    """math-verify ``strict``; False matches variables by position and lets sets compare with tuples."""
    fast_path: bool = True
    """Decide identical strings and integer pairs in process (see the module docstring)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "extractors", tuple(self.extractors) if not isinstance(self.extractors, str) else self.extractors
        )
        _check_extractors(self.extractors)
        _check_positive("window", self.window, int)
        _check_positive("max_answer_chars", self.max_answer_chars, int)
        _check_positive("timeout_s", self.timeout_s)
        if self.workers is not None:
            _check_positive("workers", self.workers, int)
        if self.memory_mb is not None:
            _check_positive("memory_mb", self.memory_mb, int)
        for name in ("float_rounding", "numeric_precision"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")


def gold_answer_text(value: Any, where: str = "answer") -> str | None:
    r"""The gold answer as a string: numbers formatted, worked solutions reduced to their answer.

    None stays None (no gold). ``70.0`` -> ``"70"`` (:func:`apmpo.rewards.extract.value_text`).
    A string containing ``\boxed{}`` gives the last box's content; one containing ``####``
    gives what follows it.
    """
    if value is None:
        return None
    if isinstance(value, str) and ("\\boxed" in value or "\\fbox" in value):
        boxed = extract_boxed(value, window=len(value))
        if boxed is not None:
            return boxed
    if isinstance(value, str) and "####" in value:
        marked = extract_gsm8k(value, window=len(value))
        if marked:
            return marked
    try:
        return value_text(value)
    except TypeError:
        raise TypeError(f"{where}: expected a string or a number, got {type(value).__name__}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _fast_verdict(gold: str, pred: str) -> RewardResult | None:
    if _SPACES.sub(" ", gold) == _SPACES.sub(" ", pred):
        return RewardResult(1.0, "correct: identical to the gold answer")
    g, p = gold.replace(" ", ""), pred.replace(" ", "")
    if _INTEGER.fullmatch(g) and _INTEGER.fullmatch(p):
        if int(g) == int(p):
            return RewardResult(1.0, "correct: equal integers")
        return RewardResult(0.0, f"wrong: {short(pred)} != gold {short(gold)}")
    return None


def _score_math(texts: list[str], kwargs: Mapping[str, Any], options: MathOptions) -> list[RewardResult]:
    golds = column(kwargs, "answer", len(texts), "math_accuracy")
    results: list[RewardResult | None] = [None] * len(texts)
    to_check: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for i, (text, raw_gold) in enumerate(zip(texts, golds)):
        gold = gold_answer_text(raw_gold, f"answer[{i}]")
        if gold is None or gold == "":
            results[i] = RewardResult(None, "no gold answer for this item")
            continue
        found = extract_answer_with_source(text, options.extractors, options.last_number, options.window)
        if found is None:
            results[i] = RewardResult(0.0, "no final answer found")
            continue
        pred, source = found
        if not pred:
            results[i] = RewardResult(0.0, f"empty answer ({source})", answer=pred)
            continue
        if len(pred) > options.max_answer_chars:
            results[i] = RewardResult(
                0.0,
                f"answer too long ({len(pred)} > {options.max_answer_chars} characters, {source})",
                answer=pred[:200],
            )
            continue
        verdict = _fast_verdict(gold, pred) if options.fast_path else None
        if verdict is not None:
            results[i] = RewardResult(verdict.score, f"{verdict.reason} ({source})", answer=pred)
            continue
        to_check.setdefault((gold, pred), []).append((i, source))
    if to_check:
        keys = list(to_check)
        pool = get_pool("math", options.workers or default_workers(), options.memory_mb)
        items = [(gold, pred, options.float_rounding, options.numeric_precision, options.strict) for gold, pred in keys]
        for (gold, pred), outcome in zip(keys, pool.map(items, options.timeout_s)):
            for i, source in to_check[(gold, pred)]:
                if not outcome.ok:
                    results[i] = RewardResult(0.0, f"not verified: {outcome.error} ({source})", answer=pred)
                elif outcome.value[0]:
                    results[i] = RewardResult(1.0, f"correct: {outcome.value[1]} to gold ({source})", answer=pred)
                else:
                    results[i] = RewardResult(
                        0.0, f"wrong: {outcome.value[1]} -- {short(pred)} vs gold {short(gold)} ({source})", answer=pred
                    )
    return results  # type: ignore[return-value]


math_accuracy = RewardFunction(
    "math_accuracy",
    _score_math,
    MathOptions(),
    columns=("answer",),
    doc=__doc__,
)

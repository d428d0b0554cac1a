"""Worker-side math equivalence check with math-verify (runs inside a reward worker).

Imports only the standard library and ``math_verify``; the parent process never imports
this module (sympy is slow to import and unsafe to run on untrusted input in process).
math-verify's own ``signal.alarm`` timeouts are switched off (``parsing_timeout=None``,
``timeout_seconds=None``): the pool's per-item time budget replaces them.
"""

from __future__ import annotations

import functools
import logging

from math_verify import parse
from math_verify import verify as _verify

# "Timeout is disabled" warnings and per-item debug noise are expected here.
logging.getLogger("math_verify").setLevel(logging.CRITICAL)


def _wrap(answer: str) -> str:
    # A boxed answer is what math-verify extracts with the highest priority, so an answer
    # string (already extracted by the parent) is parsed as one expression.
    return "\\boxed{" + answer + "}"


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    return parse(_wrap(gold), parsing_timeout=None)


def verify(gold: str, pred: str, float_rounding: int, numeric_precision: int, strict: bool) -> list:
    """``[1, reason]`` if ``pred`` is mathematically equivalent to ``gold``, else ``[0, reason]``."""
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return [0, "gold answer could not be parsed by math-verify"]
    pred_parsed = parse(_wrap(pred), parsing_timeout=None)
    if not pred_parsed:
        return [0, "answer could not be parsed by math-verify"]
    equal = _verify(
        gold_parsed,
        pred_parsed,
        float_rounding=float_rounding,
        numeric_precision=numeric_precision,
        strict=strict,
        timeout_seconds=None,
    )
    return [1, "equivalent"] if equal else [0, "not equivalent"]


def warm_up() -> None:
    """Load the LaTeX grammar and sympy's lazily imported parts before the first item."""
    verify("\\frac{1}{2}", "0.5", 6, 15, True)
    _parse_gold.cache_clear()

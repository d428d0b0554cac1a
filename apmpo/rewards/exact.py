r"""Exact / numeric / multiple-choice match, in process and fast (no sympy, no workers).

``exact_match(completions, answer, **options) -> list[float | None]`` extracts the
completion's final answer with the same extractors as :func:`math_accuracy` (plus the
last-number fallback, on by default here) and compares it with the gold ``answer``:

* numbers (gold an int/float, or a string that parses as one): the answer is read as
  a number (``-1,234.5``, ``3/4``, ``\frac{3}{4}``, ``1e3``, a trailing ``%`` or unit
  word dropped via the last-number fallback); two integers must be equal, otherwise
  ``|pred - gold| <= max(abs_tol, rel_tol * |gold|)``;
* multiple-choice letters (gold ``"B"``, ``"(B)"``, ``"B."``; letters in ``choice_letters``):
  the answer must name the same letter (``\boxed{B}``, ``"Answer: (B)"``,
  ``"The answer is B."``, ``"Answer: C. 42"``, or a completion that is nothing but
  ``"B"`` / ``"(B)"``); case-insensitive;
* anything else: string equality after stripping and collapsing whitespace
  (case-insensitive unless ``case_sensitive``).

``match_mode`` forces one of ``"number"``, ``"choice"``, ``"string"`` instead of ``"auto"``.
Model text is bounded: only the last ``window`` characters are searched, answers
longer than ``max_answer_chars`` score 0, and exponents are limited to 3 digits so
that ``1e999999999`` cannot make Python build a huge integer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .base import RewardFunction, RewardResult, column, short
from .extract import (
    DEFAULT_WINDOW,
    _check_extractors,
    extract_answer_with_source,
    extract_last_number,
)

__all__ = ["ExactOptions", "exact_match", "parse_choice", "parse_number"]

_MODES = ("auto", "number", "choice", "string")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?")
_FRACTION = re.compile(r"([-+]?\d{1,400})\s*/\s*([-+]?\d{1,400})")
_LATEX_FRACTION = re.compile(r"(-?)\\[dt]?frac\{\s*(-?\d{1,400})\s*\}\{\s*(-?\d{1,400})\s*\}")
_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}")
_CHOICE = re.compile(r"\(?\s*([A-Za-z])\s*\)?(?:[.:)]|\s|$)")
_BARE_CHOICE = re.compile(r"\(?\s*[A-Za-z]\s*\)?\.?")
_SPACES = re.compile(r"\s+")


def _unwrap(text: str) -> str:
    r"""Remove ``\text{...}``-style wrappers, ``$`` and ``\$``, ``\!`` and ``\,`` spacing."""
    text = _WRAPPERS.sub(r"\1", text).replace("\u2212", "-")
    for junk in ("\\$", "$", "\\!", "\\,", "\\;", "\\ "):
        text = text.replace(junk, "")
    return text.strip()


def parse_number(text: str, strip_commas: bool = True) -> Fraction | None:
    r"""The exact value of a number written as text, or None.

    Accepts integers, decimals, ``1e3`` (exponent of at most 3 digits), ``3/4``,
    ``\frac{3}{4}``, a trailing ``%`` / ``\%`` (dropped, not divided by 100), thousands
    separators when ``strip_commas``.
    """
    text = _unwrap(text)
    if strip_commas:
        text = text.replace(",", "")
    text = text.replace(" ", "")
    if text.endswith("\\%"):
        text = text[:-2]
    elif text.endswith("%"):
        text = text[:-1]
    if len(text) > 1000:
        return None
    try:
        if _NUMBER.fullmatch(text):
            return Fraction(text)
        match = _FRACTION.fullmatch(text)
        if match:
            return Fraction(int(match.group(1)), int(match.group(2)))
        match = _LATEX_FRACTION.fullmatch(text)
        if match:
            value = Fraction(int(match.group(2)), int(match.group(3)))
            return -value if match.group(1) else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def parse_choice(text: str, choices: str = "ABCDE") -> str | None:
    """The upper-case letter a short answer names (``"B"``, ``"(b)"``, ``"C. 42"``), or None."""
    text = _unwrap(text)
    match = _CHOICE.match(text)
    if match is None:
        return None
    letter = match.group(1).upper()
    return letter if letter in choices.upper() else None


def _is_integral(text: str, value: Fraction) -> bool:
    return value.denominator == 1 and not any(c in text for c in ".eE/")


@dataclass(frozen=True)
class ExactOptions:
    """Settings of :func:`exact_match`."""

    match_mode: str = "auto"
    """"auto" (from the gold), "number", "choice" or "string"."""
    extractors: tuple[str, ...] = ("boxed", "gsm8k", "answer")
    """Answer extractors tried in order (names from ``apmpo.rewards.EXTRACTORS``)."""
    last_number: bool = True
    """Fall back to the last number in the completion (number mode only)."""
    window: int = DEFAULT_WINDOW
    """Characters at the end of a completion searched for the answer."""
    max_answer_chars: int = 1_000
    """Extracted answers longer than this score 0."""
    rel_tol: float = 1e-6
    """Relative tolerance of non-integer numeric comparisons."""
    abs_tol: float = 1e-9
    """Absolute tolerance of non-integer numeric comparisons."""
    strip_commas: bool = True
    """Read ``1,234`` as 1234."""
    choice_letters: str = "ABCDE"
    """Letters that count as multiple-choice answers (not named ``choices``: datasets use that column name)."""
    case_sensitive: bool = False
    """String mode: compare case-sensitively."""

    def __post_init__(self) -> None:
        if self.match_mode not in _MODES:
            raise ValueError(f"match_mode: expected one of {_MODES}, got {self.match_mode!r}")
        object.__setattr__(
            self, "extractors", tuple(self.extractors) if not isinstance(self.extractors, str) else self.extractors
        )
        _check_extractors(self.extractors)
        for name in ("window", "max_answer_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("rel_tol", "abs_tol"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (value >= 0 and math.isfinite(value))
            ):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if not isinstance(self.choice_letters, str) or not self.choice_letters.isalpha():
            raise ValueError(
                f"choice_letters: expected a string of letters such as 'ABCDE', got {self.choice_letters!r}"
            )


def _gold_mode(gold: Any, options: ExactOptions, where: str) -> tuple[str, Any]:
    """(mode, parsed gold) for one gold value."""
    if isinstance(gold, bool):
        raise TypeError(f"{where}: expected a string or a number, got a bool ({gold!r})")
    if isinstance(gold, (int, float)):
        if isinstance(gold, float) and not math.isfinite(gold):
            raise ValueError(f"{where}: gold answer must be finite, got {gold!r}")
        if options.match_mode not in ("auto", "number"):
            gold = str(gold)
        else:
            # a float gold is taken as written (repr), not as its binary value: 0.1 -> 1/10
            return "number", (
                Fraction(repr(gold)) if isinstance(gold, float) else Fraction(gold),
                isinstance(gold, int) or gold.is_integer(),
            )
    if not isinstance(gold, str):
        raise TypeError(f"{where}: expected a string or a number, got {type(gold).__name__}")
    mode = options.match_mode
    if mode in ("auto", "choice"):
        letter = parse_choice(gold, options.choice_letters) if len(gold.strip()) <= 4 else None
        if letter is not None:
            return "choice", letter
        if mode == "choice":
            raise ValueError(
                f"{where}: match_mode='choice' but gold {short(gold)} "
                f"is not one of the letters {options.choice_letters!r}"
            )
    if mode in ("auto", "number"):
        value = parse_number(gold, options.strip_commas)
        if value is not None:
            return "number", (value, _is_integral(gold, value))
        if mode == "number":
            raise ValueError(f"{where}: match_mode='number' but gold {short(gold)} is not a number")
    return "string", _SPACES.sub(" ", _unwrap(gold)) if options.case_sensitive else _SPACES.sub(
        " ", _unwrap(gold)
    ).casefold()


def _numbers_match(
    pred: Fraction, pred_integral: bool, gold: Fraction, gold_integral: bool, options: ExactOptions
) -> bool:
    if pred == gold:
        return True
    if pred_integral and gold_integral:
        return False
    try:
        p, g = float(pred), float(gold)
    except OverflowError:
        return False
    return abs(p - g) <= max(options.abs_tol, options.rel_tol * abs(g))


def _score_one(text: str, gold: Any, options: ExactOptions, where: str) -> RewardResult:
    if gold is None:
        return RewardResult(None, "no gold answer for this item")
    mode, gold_value = _gold_mode(gold, options, where)
    found = extract_answer_with_source(
        text, options.extractors, options.last_number and mode == "number", options.window
    )
    if found is None and mode in ("choice", "string"):
        stripped = text.strip()
        if stripped and len(stripped) <= options.max_answer_chars:
            found = (stripped, "whole completion")
    if found is None:
        return RewardResult(0.0, "no final answer found")
    pred, source = found
    if not pred:
        return RewardResult(0.0, f"empty answer ({source})", answer=pred)
    if len(pred) > options.max_answer_chars:
        return RewardResult(
            0.0, f"answer too long ({len(pred)} > {options.max_answer_chars} characters, {source})", answer=pred[:200]
        )
    if mode == "choice":
        # a whole completion counts only when it is nothing but the letter ("A cat..." is not "A")
        bare = source != "whole completion" or _BARE_CHOICE.fullmatch(pred) is not None
        letter = parse_choice(pred, options.choice_letters) if bare else None
        if letter is None:
            return RewardResult(0.0, f"no choice letter in answer {short(pred)} ({source})", answer=pred)
        ok = letter == gold_value
        return RewardResult(
            float(ok), f"{'correct' if ok else 'wrong'}: chose {letter}, gold {gold_value} ({source})", answer=letter
        )
    if mode == "number":
        value = parse_number(pred, options.strip_commas)
        if value is None and options.last_number:
            inner = extract_last_number(pred)
            if inner is not None:
                pred, source = inner, f"last number of {source}"
                value = parse_number(pred, options.strip_commas)
        if value is None:
            return RewardResult(0.0, f"answer {short(pred)} is not a number ({source})", answer=pred)
        gold_number, gold_integral = gold_value
        ok = _numbers_match(value, _is_integral(pred, value), gold_number, gold_integral, options)
        return RewardResult(
            float(ok), f"{'correct' if ok else 'wrong'}: {short(pred)} vs gold {short(gold)} ({source})", answer=pred
        )
    normal = _SPACES.sub(" ", _unwrap(pred))
    ok = (normal if options.case_sensitive else normal.casefold()) == gold_value
    return RewardResult(
        float(ok), f"{'correct' if ok else 'wrong'}: {short(pred)} vs gold {short(gold)} ({source})", answer=pred
    )


def _score_exact(texts: list[str], kwargs: Mapping[str, Any], options: ExactOptions) -> list[RewardResult]:
    golds = column(kwargs, "answer", len(texts), "exact_match")
    return [_score_one(text, gold, options, f"answer[{i}]") for i, (text, gold) in enumerate(zip(texts, golds))]


exact_match = RewardFunction("exact_match", _score_exact, ExactOptions(), columns=("answer",), doc=__doc__)

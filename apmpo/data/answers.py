"""Turn the reference answer stored in a data file into one clean string.

Benchmark files store their reference answers in different shapes (see the README of
the shared data folder): a plain string (MATH500), a JSON float such as ``70.0``
(AIME25, AMC23), a list of strings (OlympiadBench's ``final_answer``), a worked
solution ending in ``#### 42`` (GSM8K), or only a worked solution with the answer in
``\\boxed{...}`` (Minerva). The functions here map each of them onto the string that
reward functions compare against. They never guess silently: a value that cannot be
converted raises :class:`AnswerError` with the reason, which the loader turns into an
error naming the file, row and field.

``last_boxed`` takes the reference answer out of a worked solution with the reward
package's own ``\\boxed{}`` extractor, so gold answers and model answers are read alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from apmpo.rewards.extract import extract_boxed, value_text

__all__ = [
    "AnswerError",
    "last_boxed",
    "normalize_answer",
    "answer_after_marker",
]

_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+")


class AnswerError(ValueError):
    """A reference answer value that cannot be turned into a string (reason in the message)."""


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are balanced (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``), escaped
    braces are not counted, the unbraced form ``\\boxed 5`` is accepted, and a last box
    whose braces never close gives way to the previous well-formed one. This is
    :func:`apmpo.rewards.extract.extract_boxed` (the extractor applied to completions)
    over the whole text; an empty box counts as no answer. Returns None when there is none.
    """
    if not isinstance(text, str):
        raise TypeError(f"last_boxed expects a string, got {type(text).__name__}")
    content = extract_boxed(text, window=len(text) + 1)
    if content is None or not content.strip():
        return None
    return content.strip()


def answer_after_marker(text: str, marker: str = "####") -> str | None:
    """GSM8K style: the text after the last line starting with ``marker``, else None.

    Integers written with thousands separators ("1,080") lose the commas, since
    GSM8K answers are single numbers; anything else is returned as written.
    """
    found = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(marker):
            found = stripped[len(marker) :].strip()
    if not found:
        return None
    if _THOUSANDS.fullmatch(found):
        found = found.replace(",", "")
    return found


def _scalar_to_str(value: object) -> str:
    try:
        text = value_text(value)
    except (TypeError, ValueError) as exc:
        raise AnswerError(str(exc)) from None
    if not text:
        raise AnswerError("the answer is an empty string")
    return text


def normalize_answer(value: object) -> str:
    """One clean answer string from a stored value.

    - str: stripped (must not be empty); the text is otherwise kept as written;
    - int: ``str``; float: ``70.0 -> "70"``, ``0.5 -> "0.5"`` (NaN/inf refused);
    - list/tuple (OlympiadBench ``final_answer``): one element gives that element;
      several are joined with ", " (each normalised as above); empty is refused;
    - None, bool, dict and anything else: :class:`AnswerError`.

    Numpy scalars (as read from Parquet) are converted through ``.item()``.
    """
    if value is None:
        raise AnswerError("the answer is null")
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy / torch scalar
    if isinstance(value, (list, tuple)) or (isinstance(value, Sequence) and not isinstance(value, (str, bytes))):
        items = list(value)
        if not items:
            raise AnswerError("the answer is an empty list")
        return ", ".join(_scalar_to_str(item) for item in items)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return normalize_answer(value.tolist())  # numpy array (Parquet list column)
    return _scalar_to_str(value)

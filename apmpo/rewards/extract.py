r"""Find the final answer in a model completion.

Model output is untrusted: every extractor here runs in time linear in its input (no
regular expression that can backtrack catastrophically, one pass over the braces) and
only looks at the last ``window`` characters of the completion, where final answers
are written. Extractors, in the default order of :func:`extract_answer`:

* ``"boxed"``: the content of the last ``\boxed{...}`` or ``\fbox{...}`` with balanced
  braces (escaped ``\{``/``\}`` are not counted); the unbraced ``\boxed 5`` also counts.
  A box whose braces never close is skipped in favour of an earlier well-formed one.
  An empty box gives ``""`` (the model committed to no answer).
* ``"gsm8k"``: the text after the last ``#### `` marker, up to the end of its line.
* ``"answer"``: the last "Answer: X" / "The final answer is X" phrase, up to the end of
  its line, with surrounding ``$``, ``**`` and a final period removed.
* optional ``last_number``: the last number in the text (``-1,234.5`` -> ``-1234.5``).
  Off by default for LaTeX tasks, where "the last number" is often an exponent or a
  step of the working.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = [
    "value_text",
    "DEFAULT_WINDOW",
    "EXTRACTORS",
    "extract_answer",
    "extract_answer_with_source",
    "extract_answer_line",
    "extract_boxed",
    "extract_gsm8k",
    "extract_last_number",
    "strip_answer",
]

DEFAULT_WINDOW = 20_000
"""Characters at the end of a completion searched for an answer."""

_BRACE_TOKENS = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])|\\.|[{}]", re.DOTALL)
_GSM8K = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER = re.compile(r"\banswer\**[ \t]*(?:is\b[ \t]*[:：]?|[:：])[ \t]*([^\n]*)", re.IGNORECASE)
_NUMBER = re.compile(r"[-\u2212]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")


def _tail(text: str, window: int) -> str:
    return text[-window:] if len(text) > window else text


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - we want the final one
        pass
    return last


def extract_boxed(text: str, window: int = DEFAULT_WINDOW) -> str | None:
    r"""Content of the last well-formed ``\boxed{...}``/``\fbox{...}``; None if there is none.

    >>> extract_boxed(r"so \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    """
    text = _tail(text, window)
    boxes: list[int] = []  # end offsets of box commands
    opened: list[int] = []
    closing: dict[int, int] = {}  # offset of "{" -> offset of its "}"
    for match in _BRACE_TOKENS.finditer(text):
        token = match.group()
        if token == "{":
            opened.append(match.start())
        elif token == "}":
            if opened:
                closing[opened.pop()] = match.start()
        elif token[1] in "bf":  # \boxed or \fbox (other "\x" escapes are skipped)
            boxes.append(match.end())
    for end in reversed(boxes):
        start = end
        while start < len(text) and text[start] in " \t\n":
            start += 1
        if start < len(text) and text[start] == "{":
            close = closing.get(start)
            if close is not None:
                return text[start + 1 : close].strip()
        elif start > end and start < len(text):  # "\boxed 5": one token after whitespace
            stop = start
            while stop < len(text) and not text[stop].isspace() and text[stop] != "$":
                stop += 1
            if stop > start:
                return text[start:stop]
    return None


def value_text(value: object) -> str:
    """A stored answer value as text, the one conversion for reference answers everywhere.

    Strings are stripped; integers are written as they are; floats without a spurious
    fraction (``70.0`` -> ``"70"``), else in their shortest round-tripping form
    (``0.1`` -> ``"0.1"``). Raises TypeError for a boolean or anything that is neither a
    number nor a string, ValueError for a non-finite number.
    """
    if isinstance(value, bool):
        raise TypeError(f"a boolean ({value!r}) is not an answer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"the number {value!r} is not finite")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip()
    raise TypeError(f"a value of type {type(value).__name__} ({value!r:.60}) is not an answer")


def strip_answer(answer: str) -> str:
    """Remove what commonly wraps an answer written in prose: ``$``, ``**``, a final period."""
    answer = answer.strip()
    for _ in range(3):
        before = answer
        answer = answer.strip().strip("*").strip()
        if answer.endswith(".") and not answer[:-1].rstrip().endswith("."):
            answer = answer[:-1].rstrip()
        if len(answer) >= 2 and answer.startswith("$") and answer.endswith("$"):
            answer = answer.strip("$").strip()
        if len(answer) >= 4 and answer.startswith("\\(") and answer.endswith("\\)"):
            answer = answer[2:-2].strip()
        if len(answer) >= 4 and answer.startswith("\\[") and answer.endswith("\\]"):
            answer = answer[2:-2].strip()
        if answer == before:
            break
    return answer


def extract_gsm8k(text: str, window: int = DEFAULT_WINDOW) -> str | None:
    """The text after the last ``####`` marker (GSM8K's answer format); None if absent."""
    match = _last_match(_GSM8K, _tail(text, window))
    if match is None:
        return None
    return strip_answer(match.group(1))


def extract_answer_line(text: str, window: int = DEFAULT_WINDOW) -> str | None:
    """The last "Answer: X" / "the final answer is X" phrase's X (to end of line); None if absent."""
    found = None
    for match in _ANSWER.finditer(_tail(text, window)):
        value = strip_answer(match.group(1))
        if value:
            found = value
    return found


def extract_last_number(text: str, window: int = DEFAULT_WINDOW) -> str | None:
    """The last number in the text (thousands separators removed, U+2212 minus read as "-"); None if none."""
    match = _last_match(_NUMBER, _tail(text, window))
    if match is None:
        return None
    return match.group().replace(",", "").replace("\u2212", "-")


EXTRACTORS = {
    "boxed": extract_boxed,
    "gsm8k": extract_gsm8k,
    "answer": extract_answer_line,
}
"""Named extractors usable in the ``extractors`` option of the rewards."""


def _check_extractors(extractors: Sequence[str]) -> None:
    if isinstance(extractors, str):
        raise ValueError(f"extractors: expected a sequence of names, got the string {extractors!r}")
    for name in extractors:
        if name not in EXTRACTORS:
            raise ValueError(f"extractors: unknown extractor {name!r}; known: {sorted(EXTRACTORS)}")


def extract_answer_with_source(
    text: str,
    extractors: Sequence[str] = ("boxed", "gsm8k", "answer"),
    last_number: bool = False,
    window: int = DEFAULT_WINDOW,
) -> tuple[str, str] | None:
    """``(answer, extractor name)`` from the first extractor that finds one; None otherwise.

    ``last_number=True`` adds the last-number fallback (source ``"last_number"``).
    """
    _check_extractors(extractors)
    for name in extractors:
        found = EXTRACTORS[name](text, window)
        if found is not None:
            return found, name
    if last_number:
        found = extract_last_number(text, window)
        if found is not None:
            return found, "last_number"
    return None


def extract_answer(
    text: str,
    extractors: Sequence[str] = ("boxed", "gsm8k", "answer"),
    last_number: bool = False,
    window: int = DEFAULT_WINDOW,
) -> str | None:
    r"""The final answer of a completion, or None.

    Tries ``extractors`` in order (names from :data:`EXTRACTORS`), then the last number
    if ``last_number`` is set. Only the last ``window`` characters are searched.

    >>> extract_answer("The answer is $\\frac{3}{4}$.")
    '\\frac{3}{4}'
    >>> extract_answer("so 6 * 7 = 42", last_number=True)
    '42'
    """
    found = extract_answer_with_source(text, extractors, last_number, window)
    return None if found is None else found[0]

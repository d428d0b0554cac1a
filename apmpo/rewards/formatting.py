r"""Format reward and DAPO's soft overlong penalty.

``format_reward(completions, **options)`` scores 1.0 when a completion has the required
shape, else 0.0. Shapes (``require`` option; checks use plain string search, linear in
the text):

* ``"boxed"`` (default): a final ``\boxed{...}`` with balanced braces and non-empty
  content is present (in the last ``window`` characters);
* ``"think"``: exactly one ``<think>`` ... ``</think>`` block, opened at the start of
  the completion (leading whitespace allowed), closed, and followed by a non-empty
  answer; with ``think_prefilled=True`` the prompt already ended with ``<think>``, so
  the completion must not open one but must close it;
* ``"answer_tag"``: exactly one ``<answer>...</answer>`` with non-empty content;
* ``"think_answer"``: the DeepSeek-R1 template -- ``"think"`` whose answer part is
  exactly one ``<answer>...</answer>`` block with nothing after it.

``overlong_penalty(completions, completion_ids=..., max_len=L_max, cache_len=L_cache)``
is DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, "soft overlong punishment") for a
completion of length L tokens:

    0                                  if L <= L_max - L_cache
    ((L_max - L_cache) - L) / L_cache  if L_max - L_cache < L <= L_max
    -1                                 if L > L_max

so the penalty falls linearly from 0 to -1 over the last L_cache tokens before L_max.
Lengths come from ``completion_ids`` (the unpadded token ids TRL passes to every reward)
or from a ``completion_lengths`` column; both must count the same tokens the length
limit counts. ``max_len`` and ``cache_len`` have no defaults: set them with
``overlong_penalty.configure(max_len=..., cache_len=...)``. The score is in [-1, 0]:
add it to a [0, 1] task reward with :func:`combine` (the sum then lies in [-1, 1],
which the APMPO statistics must be told about -- see the spec's reward-range rule).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import RewardFunction, RewardResult, column
from .extract import DEFAULT_WINDOW, extract_boxed

__all__ = ["FORMATS", "FormatOptions", "OverlongOptions", "format_reward", "overlong_penalty", "soft_overlong"]


def _check_boxed(text: str, window: int, prefilled: bool) -> tuple[bool, str]:
    boxed = extract_boxed(text, window)
    if boxed is None:
        return False, "no well-formed \\boxed{...}"
    if not boxed:
        return False, "the last \\boxed{} is empty"
    return True, "has a final \\boxed{...} answer"


def _split_think(text: str, prefilled: bool) -> tuple[str | None, str]:
    """(answer part after </think>, reason) -- answer part None when the think block is malformed."""
    body = text.lstrip()
    opens = body.count("<think>")
    if prefilled:
        if opens:
            return None, "contains <think> although the prompt opened it"
    else:
        if not body.startswith("<think>"):
            return None, "does not start with <think>"
        if opens != 1:
            return None, f"{opens} <think> tags (expected 1)"
    closes = body.count("</think>")
    if closes != 1:
        return None, f"{closes} </think> tags (expected 1)"
    return body.split("</think>", 1)[1], ""


def _check_think(text: str, window: int, prefilled: bool) -> tuple[bool, str]:
    answer, reason = _split_think(text, prefilled)
    if answer is None:
        return False, reason
    if not answer.strip():
        return False, "nothing after </think>"
    return True, "well-formed <think> block followed by an answer"


def _answer_tag(text: str) -> tuple[str | None, str]:
    opens, closes = text.count("<answer>"), text.count("</answer>")
    if opens != 1 or closes != 1:
        return None, f"{opens} <answer> and {closes} </answer> tags (expected 1 each)"
    start, end = text.find("<answer>"), text.find("</answer>")
    if end < start:
        return None, "</answer> before <answer>"
    content = text[start + len("<answer>") : end]
    if not content.strip():
        return None, "empty <answer></answer>"
    return content, text[end + len("</answer>") :]


def _check_answer_tag(text: str, window: int, prefilled: bool) -> tuple[bool, str]:
    content, rest = _answer_tag(text)
    if content is None:
        return False, rest
    return True, "has a non-empty <answer> block"


def _check_think_answer(text: str, window: int, prefilled: bool) -> tuple[bool, str]:
    answer, reason = _split_think(text, prefilled)
    if answer is None:
        return False, reason
    if not answer.lstrip().startswith("<answer>"):
        return False, "the part after </think> does not start with <answer>"
    content, rest = _answer_tag(answer)
    if content is None:
        return False, rest
    if rest.strip():
        return False, "text after </answer>"
    return True, "<think>...</think><answer>...</answer>"


FORMATS: dict[str, Callable[[str, int, bool], tuple[bool, str]]] = {
    "boxed": _check_boxed,
    "think": _check_think,
    "answer_tag": _check_answer_tag,
    "think_answer": _check_think_answer,
}
"""Format checks by name: ``check(text, window, think_prefilled) -> (ok, reason)``."""


@dataclass(frozen=True)
class FormatOptions:
    """Settings of :func:`format_reward`."""

    require: str = "boxed"
    """Which shape is required: a name from ``FORMATS``."""
    think_prefilled: bool = False
    """The prompt ends with ``<think>`` (R1-style templates), so completions do not open it."""
    window: int = DEFAULT_WINDOW
    """Characters at the end of a completion searched for a box ("boxed")."""
    max_chars: int = 1_000_000
    """Completions longer than this score 0 without being checked."""

    def __post_init__(self) -> None:
        if self.require not in FORMATS:
            raise ValueError(f"require: unknown format {self.require!r}; known: {sorted(FORMATS)}")
        for name in ("window", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _score_format(texts: list[str], kwargs: Mapping[str, Any], options: FormatOptions) -> list[RewardResult]:
    check = FORMATS[options.require]
    results = []
    for text in texts:
        if len(text) > options.max_chars:
            results.append(
                RewardResult(0.0, f"completion too long to check ({len(text)} > {options.max_chars} characters)")
            )
            continue
        ok, reason = check(text, options.window, options.think_prefilled)
        results.append(RewardResult(1.0 if ok else 0.0, reason))
    return results


format_reward = RewardFunction("format_reward", _score_format, FormatOptions(), doc=__doc__)


def soft_overlong(length: int, max_len: int, cache_len: int) -> float:
    """DAPO's soft overlong penalty of one completion of ``length`` tokens (see the module docstring)."""
    threshold = max_len - cache_len
    if length <= threshold:
        return 0.0
    if length <= max_len:
        return (threshold - length) / cache_len
    return -1.0


@dataclass(frozen=True)
class OverlongOptions:
    """Settings of :func:`overlong_penalty` (L_max and L_cache of DAPO)."""

    max_len: int | None = None
    """L_max: the generation length limit in tokens (required)."""
    cache_len: int | None = None
    """L_cache: length of the soft-penalty zone just below L_max, 0 < L_cache <= L_max (required)."""

    def __post_init__(self) -> None:
        for name in ("max_len", "cache_len"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.max_len is not None and self.cache_len is not None and self.cache_len > self.max_len:
            raise ValueError(f"cache_len: must be <= max_len ({self.max_len}), got {self.cache_len}")


def _lengths(n: int, kwargs: Mapping[str, Any]) -> list[int]:
    if kwargs.get("completion_ids") is not None:
        ids = column(kwargs, "completion_ids", n, "overlong_penalty")
        lengths = []
        for i, row in enumerate(ids):
            if isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
                raise TypeError(
                    f"overlong_penalty: completion_ids[{i}] must be a sequence of token ids, got {type(row).__name__}"
                )
            lengths.append(len(row))
        return lengths
    if kwargs.get("completion_lengths") is not None:
        values = column(kwargs, "completion_lengths", n, "overlong_penalty")
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"overlong_penalty: completion_lengths[{i}] must be a non-negative integer, got {value!r}"
                )
        return values
    raise TypeError(
        "overlong_penalty: needs token lengths: pass completion_ids=[...] (TRL does) or completion_lengths=[...]"
    )


def _score_overlong(texts: list[str], kwargs: Mapping[str, Any], options: OverlongOptions) -> list[RewardResult]:
    if options.max_len is None or options.cache_len is None:
        raise ValueError(
            "overlong_penalty: max_len and cache_len are not set; "
            "use overlong_penalty.configure(max_len=L_max, cache_len=L_cache)"
        )
    threshold = options.max_len - options.cache_len
    results = []
    for length in _lengths(len(texts), kwargs):
        score = soft_overlong(length, options.max_len, options.cache_len)
        if length <= threshold:
            reason = f"length {length} <= {threshold}: no penalty"
        elif length <= options.max_len:
            reason = f"length {length} in the soft zone ({threshold}, {options.max_len}]"
        else:
            reason = f"length {length} > max_len {options.max_len}"
        results.append(RewardResult(score, reason))
    return results


overlong_penalty = RewardFunction("overlong_penalty", _score_overlong, OverlongOptions(), doc=__doc__)

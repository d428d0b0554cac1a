"""The reward-function contract: TRL-compatible callables with structured results.

Every reward in :mod:`apmpo.rewards` is a :class:`RewardFunction`:

* ``fn(completions, **dataset_columns) -> list[float | None]`` -- TRL's contract.
  ``completions`` holds strings or chat message lists
  (``[{"role": "assistant", "content": "..."}]``; a content given as a list of parts
  contributes its ``"text"`` parts). Dataset columns arrive as keyword arguments, one
  value per completion; columns a reward does not use (``prompts``, ``completion_ids``,
  ``trainer_state``, ...) are ignored. The required columns may also be passed
  positionally, e.g. ``math_accuracy(completions, answers)``.
* ``fn.score_items(completions, **dataset_columns) -> list[RewardResult]`` -- the same
  scores with a human-readable reason each (and, for :func:`combine`, each part's).
* ``fn.last_results`` -- the :class:`RewardResult` list of the most recent call, so a
  trainer that called ``fn(...)`` can log reasons without scoring twice.
* ``fn.configure(**options) -> RewardFunction`` -- a copy with options changed.
  Unknown option names raise. Options may also be given per call as keyword arguments;
  there an unknown name is taken for a dataset column and ignored, as TRL requires.
* ``fn.__name__`` -- the name TRL logs the reward under.

A score of ``None`` means "this reward has no score for this item" (e.g. its gold
answer is missing). It has one meaning everywhere in apmpo, TRL's: wherever a number is
needed it stands for 0 (:func:`score_value`, the one place the conversion happens). A
weighted sum adds nothing for it (TRL's ``nansum``), so an item no reward applies to has
total reward 0 and takes part in the advantages and the batch reward statistics like
any other; a mean over items (a logged per-function reward, the accuracy, Pass@k)
counts it as 0, i.e. not correct. Only :func:`combine` keeps the distinction: its score
is None when none of its parts applies, so that a sum over it adds nothing either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NO_SCORE",
    "RewardFunction",
    "RewardResult",
    "column",
    "completion_text",
    "completion_texts",
    "score_value",
    "short",
]

NO_SCORE = 0.0
"""The number a ``None`` score stands for (see the module docstring)."""


def score_value(score: float | None) -> float:
    """The number a reward score stands for in any arithmetic: ``None`` (no score) is :data:`NO_SCORE`."""
    return NO_SCORE if score is None else float(score)


@dataclass(frozen=True)
class RewardResult:
    """Score of one completion and why.

    Attributes:
        score: the reward, or None when the reward does not apply to this item.
        reason: a short human-readable explanation ("correct (boxed)", "timed out ...").
        answer: what was extracted from the completion and graded (final answer, SQL),
            or None when nothing was (or the reward does not extract).
        components: for a combined reward, each part's result by name; else empty.
    """

    score: float | None
    reason: str
    answer: str | None = None
    components: Mapping[str, RewardResult] = field(default_factory=dict)


def short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters, for reasons and error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def completion_text(completion: Any, where: str = "completions[0]") -> str:
    """The text of one completion: a string, a chat message, or a list of messages.

    From message lists, the contents of the assistant messages (or of messages without
    a role) are joined with newlines; tool and user messages are skipped.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, Sequence) or isinstance(completion, (bytes, bytearray)):
        raise TypeError(f"{where}: expected a string or a list of chat messages, got {type(completion).__name__}")
    parts = []
    for j, message in enumerate(completion):
        if not isinstance(message, Mapping):
            raise TypeError(f"{where}[{j}]: expected a chat message dict, got {type(message).__name__}")
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, Sequence):
            for k, part in enumerate(content):
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, Mapping):
                    if part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                        parts.append(part["text"])
                else:
                    raise TypeError(
                        f"{where}[{j}]['content'][{k}]: expected a str or a content dict, got {type(part).__name__}"
                    )
        else:
            raise TypeError(f"{where}[{j}]['content']: expected a str or a list of parts, got {type(content).__name__}")
    return "\n".join(parts)


def completion_texts(completions: Any) -> list[str]:
    """Texts of a batch of completions (see :func:`completion_text`)."""
    if isinstance(completions, (str, bytes, Mapping)) or not isinstance(completions, Sequence):
        raise TypeError(
            f"completions: expected a list of completions (strings or message lists), got {type(completions).__name__}"
        )
    return [completion_text(c, f"completions[{i}]") for i, c in enumerate(completions)]


def column(kwargs: Mapping[str, Any], name: str, n: int, reward: str) -> list[Any]:
    """Dataset column ``name`` from ``kwargs`` as a list of ``n`` values.

    A list/tuple (or other sized sequence) must have one value per completion; a single
    str/int/float/None is repeated for every completion.
    """
    if name not in kwargs:
        raise TypeError(f"{reward}: missing dataset column {name!r} (pass {name}=[one value per completion])")
    value = kwargs[name]
    if value is None or isinstance(value, (str, int, float)):
        return [value] * n
    if isinstance(value, Mapping):
        raise TypeError(f"{reward}: column {name!r} must be a list with one value per completion, got a dict")
    try:
        values = list(value)
    except TypeError:
        raise TypeError(
            f"{reward}: column {name!r} must be a list with one value per completion, got {type(value).__name__}"
        ) from None
    if len(values) != n:
        raise ValueError(f"{reward}: column {name!r} has {len(values)} values but there are {n} completions")
    return values


Scorer = Callable[[list[str], Mapping[str, Any], Any], list[RewardResult]]


class RewardFunction:
    """A reward under TRL's contract with structured results (see the module docstring).

    Args:
        name: ``__name__`` (what TRL logs).
        scorer: ``scorer(texts, kwargs, options) -> list[RewardResult]`` doing the work.
        options: a frozen dataclass instance with the reward's settings.
        columns: dataset columns that may be passed positionally after ``completions``.
        doc: docstring of the callable.
    """

    def __init__(self, name: str, scorer: Scorer, options: Any, columns: Sequence[str] = (), doc: str | None = None):
        self.__name__ = name
        self.__qualname__ = name
        self.__doc__ = doc
        self._scorer = scorer
        self.options = options
        self.columns = tuple(columns)
        self.last_results: list[RewardResult] | None = None

    def _bind(self, args: tuple, kwargs: dict) -> dict:
        if len(args) > len(self.columns):
            raise TypeError(
                f"{self.__name__}: takes completions and at most {len(self.columns)} positional columns "
                f"{list(self.columns)}, got {len(args)} positional arguments after completions"
            )
        for name, value in zip(self.columns, args):
            if name in kwargs:
                raise TypeError(f"{self.__name__}: column {name!r} given both positionally and by keyword")
            kwargs[name] = value
        return kwargs

    def _options_for_call(self, kwargs: Mapping[str, Any]) -> Any:
        if not dataclasses.is_dataclass(self.options) or isinstance(self.options, type):
            return self.options
        names = {f.name for f in dataclasses.fields(self.options)}
        overrides = {k: v for k, v in kwargs.items() if k in names}
        return dataclasses.replace(self.options, **overrides) if overrides else self.options

    def score_items(self, completions: Any, *columns: Any, **kwargs: Any) -> list[RewardResult]:
        """Score every completion; one :class:`RewardResult` per completion."""
        kwargs = self._bind(columns, dict(kwargs))
        texts = completion_texts(completions)
        results = self._scorer(texts, kwargs, self._options_for_call(kwargs))
        if len(results) != len(texts):  # a scorer bug, never the user's
            raise RuntimeError(f"{self.__name__}: scored {len(results)} items for {len(texts)} completions")
        self.last_results = results
        return results

    def __call__(self, completions: Any, *columns: Any, **kwargs: Any) -> list[float | None]:
        return [r.score for r in self.score_items(completions, *columns, **kwargs)]

    def configure(self, name: str | None = None, **options: Any) -> RewardFunction:
        """A copy with ``options`` changed (and ``__name__`` set to ``name`` if given)."""
        if options:
            if not dataclasses.is_dataclass(self.options):
                raise TypeError(f"{self.__name__}: has no options to configure, got {sorted(options)}")
            names = [f.name for f in dataclasses.fields(self.options)]
            unknown = sorted(set(options) - set(names))
            if unknown:
                raise TypeError(f"{self.__name__}: unknown option(s) {unknown}; known options: {names}")
            new_options = dataclasses.replace(self.options, **options)  # type: ignore[type-var]  # a dataclass instance
        else:
            new_options = self.options
        return type(self)(name or self.__name__, self._scorer, new_options, self.columns, self.__doc__)

    def __repr__(self) -> str:
        return f"<reward {self.__name__} options={self.options!r}>"

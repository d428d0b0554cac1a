"""Built-in synthetic verifiable tasks: seeded generators with disjoint train/eval splits.

Each generator has the task signature ``make(split, n, seed, **options)`` and returns
``n`` examples, dicts with ``"prompt"`` (the question, instruction included),
``"answer"`` (an integer as a string, checked by exact match), ``"expression"`` and
``"task"``. They are registered as tasks, with their :class:`TaskSpec`, in
:data:`apmpo.tasks.BUILTIN_TASKS`; :func:`draw_problems` is the seeded, split-aware
sampler every synthetic generator uses.

Split disjointness does not depend on seeds: whether a problem belongs to "train" or
"eval" is decided by a hash of its expression (``blake2b``; eval if the hash falls
below ``eval_fraction``), and each split only keeps its own problems. So no eval
problem ever appears in train, whatever the seeds, the sizes, or the task (the same
expression is in the same split for every task) - provided the eval side uses an
``eval_fraction`` no larger than the train side's. Within a split the seed picks the
problems (``random.Random`` seeded with a string: identical across runs and
platforms). Eval problems are distinct by default; train problems may repeat when the
problem space is small.

Tasks:

- ``arithmetic``: ``a <op> b`` with op from ``ops`` ("+", "-", "*"); knobs below.
- ``multistep``: ``a <op> b <op> c ...`` with the usual precedence (``*`` before
  ``+``/``-``) and optional parentheses, e.g. ``7 + 5 * 3 - 2``; a multi-step task
  whose answer is still one integer checked by exact match.

Default difficulty (measurements in docs/data.md): the arithmetic default is addition of
one- or two-digit operands (each operand's digit count drawn from {1, 2}).
SmolLM2-135M-Instruct answers about 18% of these correctly out of the box (greedy,
last integer of the reply) and about 34% once it states just the answer, so there is
room above the format fix; one-digit addition saturates near 80-90% within a few RL
steps, two-digit addition and subtraction start at ~6%.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SPLITS",
    "TaskSpec",
    "check_task_arguments",
    "draw_problems",
    "evaluate_expression",
    "keyword_defaults",
    "make_arithmetic",
    "make_multistep",
    "problem_split",
]

SPLITS = ("train", "eval")
_OPERATORS = ("+", "-", "*")
DEFAULT_INSTRUCTION = "Answer with just the number."


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: its generator and the defaults that go with it."""

    name: str
    """Registry name."""
    make: Callable[..., list[dict[str, Any]]]
    """``make(split, n, seed=0, **options) -> list of examples``."""
    description: str
    """One line for listings."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Default values of the generator's options (the difficulty knobs)."""
    default_reward: str = "exact"
    """Reward that verifies the answers (apmpo.rewards' exact match on the integer)."""
    template: str = "{prompt}"
    """Prompt template for :func:`apmpo.data.prompts.render_prompt` (the instruction is already in "prompt")."""
    instruction: str = DEFAULT_INSTRUCTION
    """Answer-format instruction appended to each question (option ``instruction``)."""


# ---------------------------------------------------------------------------- helpers


def problem_split(expression: str, eval_fraction: float) -> str:
    """``"eval"`` or ``"train"`` for ``expression``, from a stable hash (seed-independent)."""
    digest = hashlib.blake2b(expression.encode("utf-8"), digest_size=8).digest()
    position = int.from_bytes(digest, "big") / 2.0**64  # uniform in [0, 1)
    return "eval" if position < eval_fraction else "train"


def _digit_range(spec: Any, name: str) -> tuple[int, int]:
    """(lo, hi) number of digits from 2, (1, 3), [1, 3] or "1-3"."""
    if isinstance(spec, str):
        lo_text, sep, hi_text = spec.partition("-")
        try:
            spec = (int(lo_text), int(hi_text)) if sep else int(lo_text)
        except ValueError:
            raise ValueError(f"{name} must be an integer or a range like '1-3', got {spec!r}") from None
    if isinstance(spec, bool):
        raise ValueError(f"{name} must be an integer or a (lo, hi) pair, got {spec!r}")
    if isinstance(spec, int):
        spec = (spec, spec)
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(v, int) for v in spec)):
        raise ValueError(f"{name} must be an integer or a (lo, hi) pair, got {spec!r}")
    lo, hi = spec
    if not 1 <= lo <= hi <= 18:
        raise ValueError(f"{name} must satisfy 1 <= lo <= hi <= 18, got {spec!r}")
    return lo, hi


def _random_number(rng: random.Random, digits: tuple[int, int]) -> int:
    count = rng.randint(*digits)
    low = 0 if count == 1 else 10 ** (count - 1)
    return rng.randint(low, 10**count - 1)


def _operators(ops: Any) -> tuple[str, ...]:
    chosen = tuple(ops) if not isinstance(ops, str) else tuple(ops.replace(" ", "").replace(",", ""))
    bad = [op for op in chosen if op not in _OPERATORS]
    if not chosen or bad:
        raise ValueError(f"ops must be a non-empty selection of {''.join(_OPERATORS)!r}, got {ops!r}")
    return tuple(dict.fromkeys(chosen))


def evaluate_expression(numbers: list[int], operators: list[str]) -> int:
    """Value of ``n0 o1 n1 o2 n2 ...`` with ``*`` binding tighter than ``+`` and ``-``.

    Pure integer arithmetic on the generator's own tokens (nothing is parsed or
    executed).
    """
    if len(operators) != len(numbers) - 1:
        raise ValueError("need exactly one operator between each pair of numbers")
    terms = [numbers[0]]  # products, combined left to right by the additive operators
    additive: list[str] = []
    for op, number in zip(operators, numbers[1:]):
        if op == "*":
            terms[-1] *= number
        elif op in ("+", "-"):
            additive.append(op)
            terms.append(number)
        else:
            raise ValueError(f"unknown operator {op!r}")
    total = terms[0]
    for op, term in zip(additive, terms[1:]):
        total = total + term if op == "+" else total - term
    return total


def check_task_arguments(split: str, n: int, seed: int, eval_fraction: float) -> None:
    """The arguments every task generator shares: a known split, n >= 1, an integer seed, a fraction in (0, 1)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")


def draw_problems(
    task: str,
    split: str,
    n: int,
    seed: int,
    draw: Callable[[random.Random], tuple[str, Any]],
    build: Callable[[Any, random.Random], dict[str, Any]],
    *,
    eval_fraction: float,
    unique: bool | None,
    advice: str,
) -> list[dict[str, Any]]:
    """``n`` examples of ``split``: draw problems until enough belong to it (distinct ones if ``unique``).

    ``draw(rng) -> (key, problem)`` draws one problem; its ``key`` decides the split
    (:func:`problem_split`) and what counts as the same problem. ``build(problem, rng)``
    turns a kept problem into an example. The generator is ``random.Random`` seeded with
    ``"apmpo|<task>|<split>|<seed>"``. ``unique`` defaults to True for eval, False for
    train. Too small a problem space is an error ending with ``advice``.
    """
    check_task_arguments(split, n, seed, eval_fraction)
    unique = split == "eval" if unique is None else unique
    rng = random.Random(f"apmpo|{task}|{split}|{seed}")
    examples: list[dict[str, Any]] = []
    seen: set[str] = set()
    max_draws = 200 * n + 20_000
    for _ in range(max_draws):
        key, problem = draw(rng)
        if problem_split(key, eval_fraction) != split or (unique and key in seen):
            continue
        seen.add(key)
        examples.append(build(problem, rng))
        if len(examples) == n:
            return examples
    raise ValueError(
        f"task {task!r}: found only {len(examples)} distinct {split} problems after {max_draws} draws "
        f"(asked for {n}); {advice}"
    )


def _sample(
    task: str,
    split: str,
    n: int,
    seed: int,
    draw: Callable[[random.Random], tuple[str, int]],
    *,
    template: str,
    eval_fraction: float,
    unique: bool | None,
) -> list[dict[str, Any]]:
    """Integer problems ``(expression, value)`` as examples with the question ``template``."""
    if "{expression}" not in template:
        raise ValueError(f"template must contain {{expression}}, got {template!r}")

    def draw_keyed(rng: random.Random) -> tuple[str, tuple[str, int]]:
        expression, value = draw(rng)
        return expression, (expression, value)

    def build(problem: tuple[str, int], rng: random.Random) -> dict[str, Any]:
        expression, value = problem
        return {
            "prompt": template.format(expression=expression),
            "answer": str(value),
            "expression": expression,
            "task": task,
        }

    return draw_problems(
        task,
        split,
        n,
        seed,
        draw_keyed,
        build,
        eval_fraction=eval_fraction,
        unique=unique,
        advice="the problem space is too small for these options: ask for fewer, make the problems harder "
        "(more digits/operands), change eval_fraction, or pass unique=False to allow repeats",
    )


def _template(template: str | None, instruction: str) -> str:
    if template is not None:
        return template
    return f"What is {{expression}}? {instruction}".rstrip()


# ---------------------------------------------------------------------------- tasks


def make_arithmetic(
    split: str,
    n: int,
    seed: int = 0,
    *,
    digits: int | tuple[int, int] | str = (1, 2),
    ops: str = "+",
    mul_digits: int | tuple[int, int] | str | None = None,
    allow_negative: bool = False,
    eval_fraction: float = 0.2,
    unique: bool | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
    template: str | None = None,
) -> list[dict[str, Any]]:
    """``a <op> b`` problems.

    Args:
        split: "train" or "eval".
        n: number of examples.
        seed: picks the problems within the split.
        digits: digits of each operand: an int, or a (lo, hi) range drawn per operand
            (1 digit means 0-9; d > 1 means 10^(d-1) .. 10^d - 1).
        ops: operators to draw from, uniformly: any of "+", "-", "*".
        mul_digits: digits of the operands of "*" (default: ``digits``); keeps
            multiplication tractable, e.g. two-digit by one-digit.
        allow_negative: allow ``a - b`` with b > a (default: operands are ordered so
            that answers are non-negative).
        eval_fraction: share of the problem space reserved for "eval".
        unique: distinct problems within the returned list (default: True for eval,
            False for train).
        instruction: answer-format sentence appended to the question.
        template: full question template with ``{expression}`` (overrides
            ``instruction``), e.g. ``"{expression}="`` for a model trained from scratch.
    """
    digit_range = _digit_range(digits, "digits")
    mul_range = digit_range if mul_digits is None else _digit_range(mul_digits, "mul_digits")
    operators = _operators(ops)

    def draw(rng: random.Random) -> tuple[str, int]:
        op = rng.choice(operators)
        width = mul_range if op == "*" else digit_range
        a, b = _random_number(rng, width), _random_number(rng, width)
        if op == "-" and not allow_negative and b > a:
            a, b = b, a
        return f"{a} {op} {b}", evaluate_expression([a, b], [op])

    return _sample(
        "arithmetic",
        split,
        n,
        seed,
        draw,
        template=_template(template, instruction),
        eval_fraction=eval_fraction,
        unique=unique,
    )


def make_multistep(
    split: str,
    n: int,
    seed: int = 0,
    *,
    operands: int | tuple[int, int] | str = 3,
    digits: int | tuple[int, int] | str = 1,
    ops: str = "+-*",
    parentheses: float = 0.0,
    allow_negative: bool = False,
    eval_fraction: float = 0.2,
    unique: bool | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
    template: str | None = None,
) -> list[dict[str, Any]]:
    """Multi-operand expressions such as ``7 + 5 * 3 - 2`` (``*`` before ``+``/``-``).

    Args:
        operands: number of operands (int or (lo, hi) range, at least 2).
        digits: digits of each operand, as in ``arithmetic``.
        ops: operators to draw from: any of "+", "-", "*".
        parentheses: probability of wrapping one random sub-expression (of at least
            two operands, not the whole expression) in parentheses.
        allow_negative: keep problems whose answer is negative (default: redrawn).
        Other options as in ``arithmetic``.
    """
    count_range = _digit_range(operands, "operands")
    if count_range[0] < 2:
        raise ValueError(f"operands must be at least 2, got {operands!r}")
    digit_range = _digit_range(digits, "digits")
    operators = _operators(ops)
    if not 0.0 <= parentheses <= 1.0:
        raise ValueError(f"parentheses must be a probability in [0, 1], got {parentheses!r}")

    def draw(rng: random.Random) -> tuple[str, int]:
        while True:
            count = rng.randint(*count_range)
            numbers = [_random_number(rng, digit_range) for _ in range(count)]
            ops_drawn = [rng.choice(operators) for _ in range(count - 1)]
            words = [str(numbers[0])] + [f"{op} {x}" for op, x in zip(ops_drawn, numbers[1:])]
            if count >= 3 and rng.random() < parentheses:
                start = rng.randint(0, count - 2)
                stop = rng.randint(start + 1, count - 1)
                if stop - start + 1 == count:  # not the whole expression
                    stop -= 1
                inner = evaluate_expression(numbers[start : stop + 1], ops_drawn[start:stop])
                value = evaluate_expression(
                    numbers[:start] + [inner] + numbers[stop + 1 :], ops_drawn[:start] + ops_drawn[stop:]
                )
                first = words[start]
                words[start] = f"({first}" if start == 0 else f"{first[:2]}({first[2:]}"
                words[stop] = words[stop] + ")"
            else:
                value = evaluate_expression(numbers, ops_drawn)
            if allow_negative or value >= 0:
                return " ".join(words), value

    return _sample(
        "multistep",
        split,
        n,
        seed,
        draw,
        template=_template(template, instruction),
        eval_fraction=eval_fraction,
        unique=unique,
    )


def keyword_defaults(make: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only options of a generator with their defaults (one source of truth)."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(make).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }

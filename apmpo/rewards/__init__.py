"""Verifiable (rule-based) rewards for RLVR, usable by the apmpo trainer and by TRL.

APMPO (arXiv 2605.04066) trains on binary rule-based rewards for math, text-to-SQL and
multiple-choice geometry. This package provides them, and the shaping terms used by
the baselines:

* :data:`math_accuracy` -- final answer equivalent to the gold (math-verify, sandboxed);
* :data:`exact_match` -- integers, floats with tolerance, choice letters, strings;
* :data:`sql_execution` -- SQLite execution accuracy, read-only and sandboxed;
* :data:`format_reward` -- a required output shape (boxed answer, think/answer tags);
* :data:`overlong_penalty` -- DAPO's soft overlong punishment;
* :func:`combine` -- a weighted sum that keeps each part's score and reason.

Every reward follows TRL's contract ``fn(completions, **dataset_columns) ->
list[float | None]`` and gives structured results with ``fn.score_items(...)`` (see
:mod:`apmpo.rewards.base`). Configs name rewards by string through :data:`REWARDS` /
:func:`get_reward`. Checks that can hang on hostile model output (sympy, SQL) run in a
bounded pool of worker processes (:mod:`apmpo.rewards.pool`), created on first use and
stopped at exit or by :func:`shutdown_pools`. Nothing here imports torch or sympy in
the calling process.
"""

from __future__ import annotations

from .base import NO_SCORE, RewardFunction, RewardResult, completion_text, completion_texts, score_value
from .compose import combine
from .exact import ExactOptions, exact_match, parse_choice, parse_number
from .extract import (
    EXTRACTORS,
    extract_answer,
    extract_answer_line,
    extract_answer_with_source,
    extract_boxed,
    extract_gsm8k,
    extract_last_number,
)
from .formatting import (
    FORMATS,
    FormatOptions,
    OverlongOptions,
    format_reward,
    overlong_penalty,
    soft_overlong,
)
from .math_reward import MathOptions, gold_answer_text, math_accuracy
from .pool import WorkerStartError, default_workers, shutdown_pools
from .registry import REWARDS, get_reward
from .sql import SqlOptions, extract_sql, sql_execution

__all__ = [
    "NO_SCORE",
    "EXTRACTORS",
    "FORMATS",
    "REWARDS",
    "ExactOptions",
    "FormatOptions",
    "MathOptions",
    "OverlongOptions",
    "RewardFunction",
    "RewardResult",
    "SqlOptions",
    "WorkerStartError",
    "combine",
    "completion_text",
    "completion_texts",
    "default_workers",
    "exact_match",
    "extract_answer",
    "extract_answer_line",
    "extract_answer_with_source",
    "extract_boxed",
    "extract_gsm8k",
    "extract_last_number",
    "extract_sql",
    "format_reward",
    "get_reward",
    "gold_answer_text",
    "math_accuracy",
    "overlong_penalty",
    "parse_choice",
    "parse_number",
    "score_value",
    "shutdown_pools",
    "soft_overlong",
    "sql_execution",
]

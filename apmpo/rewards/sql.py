"""Text-to-SQL execution accuracy on SQLite, safe against hostile queries.

``sql_execution(completions, gold_sql, db_path, **options) -> list[float | None]``: the
SQL of each completion (the last ```` ```sql ```` fenced block, else the last fenced
block, else the whole completion) and the gold query are both run on the item's
SQLite database; 1.0 when the results match, else 0.0. This is execution accuracy,
the paper's reward for its text-to-SQL task (BIRD, Spider; arXiv 2605.04066).

Comparison (``comparison``): ``"multiset"`` (default, as Spider's evaluator) compares
the rows as multisets, and in order when the gold query has an ORDER BY (anywhere
outside string literals and comments); ``"set"`` compares sets of rows whatever the
order, as BIRD's evaluator does; ``"unordered"`` (multisets, never ordered) and
``"ordered"`` (always in order) force one rule. Column names never matter.

Safety: queries run only in the shared ``"sql"`` worker pool, on a read-only
connection with an authorizer that denies everything but reading (see
``_worker_sql.py`` for the full list), one statement per query, a per-query time
limit (``query_timeout_s``, via SQLite's progress handler), caps on rows and bytes
fetched, a hard per-item timeout (``hard_timeout_s``) after which the worker is killed,
a memory limit, and no permission to write data to any file. The database file is
never modified, and nothing is created beside it (a WAL-mode file is opened with
``immutable=1``, so it must have no pending ``-wal`` content).

A gold query that fails scores per ``on_gold_error``: ``"zero"`` (0.0 with the reason,
the default -- a broken row must not stop a long run), ``"none"`` (the item is not
graded) or ``"raise"``. A missing or non-SQLite database file always raises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import RewardFunction, RewardResult, column, short
from .pool import default_workers, get_pool

__all__ = ["SqlOptions", "extract_sql", "sql_execution"]

_COMPARISONS = ("multiset", "set", "unordered", "ordered")
_ON_GOLD_ERROR = ("zero", "none", "raise")


def extract_sql(text: str, window: int = 200_000) -> str:
    """The SQL of a completion: last ```` ```sql ```` block, else last fenced block, else the text.

    An unterminated final fence (generation cut off) counts as a block. The result is
    stripped of whitespace and trailing semicolons; it may be empty.
    """
    text = text[-window:] if len(text) > window else text
    pieces = text.split("```")
    if len(pieces) < 2:
        return text.strip().rstrip(";").strip()
    blocks = pieces[1::2]
    chosen = None
    for block in blocks:
        first_line, _, rest = block.partition("\n")
        if first_line.strip().lower() in ("sql", "sqlite"):
            chosen = rest
    if chosen is None:
        block = blocks[-1]
        first_line, newline, rest = block.partition("\n")
        tag = first_line.strip()
        chosen = (
            rest
            if newline and tag and " " not in tag and tag.isalnum() and tag.upper() not in ("SELECT", "WITH")
            else block
        )
    return chosen.strip().rstrip(";").strip()


@dataclass(frozen=True)
class SqlOptions:
    """Settings of :func:`sql_execution`."""

    comparison: str = "multiset"
    """"multiset" (in order iff the gold has ORDER BY), "set" (BIRD), "unordered" or "ordered"."""
    query_timeout_s: float = 5.0
    """Time limit of each query (gold and predicted), enforced by SQLite's progress handler."""
    hard_timeout_s: float | None = None
    """Hard limit per item after which the worker is killed; None = 2 * query_timeout_s + 5."""
    max_rows: int = 100_000
    """Queries returning more rows fail (the item scores 0)."""
    max_bytes: int = 16 * 1024 * 1024
    """Queries returning more bytes fail; also SQLite's limit on one string or blob."""
    max_sql_chars: int = 20_000
    """Extracted SQL longer than this scores 0 without being run."""
    on_gold_error: str = "zero"
    """When the gold query fails: "zero" (score 0), "none" (not graded) or "raise"."""
    workers: int | None = None
    """Worker processes; None = ``min(2, cpu_count)``."""
    memory_mb: int | None = 2048
    """Address-space limit of each worker in MiB (None: unlimited)."""

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"comparison: expected one of {_COMPARISONS}, got {self.comparison!r}")
        if self.on_gold_error not in _ON_GOLD_ERROR:
            raise ValueError(f"on_gold_error: expected one of {_ON_GOLD_ERROR}, got {self.on_gold_error!r}")
        for name in ("query_timeout_s", "hard_timeout_s"):
            value = getattr(self, name)
            if value is None and name == "hard_timeout_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        for name in ("max_rows", "max_bytes", "max_sql_chars", "workers", "memory_mb"):
            value = getattr(self, name)
            if value is None and name in ("workers", "memory_mb"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _db_file(value: Any, where: str) -> tuple[str, bool]:
    """(absolute path, whether to open it immutable) of a database; raises if it cannot be graded on.

    A WAL-mode file is opened ``immutable=1`` so that no ``-wal``/``-shm`` file is created
    beside it; it must then have no pending ``-wal`` content (which immutable mode ignores).
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{where}: expected a path to an SQLite file, got {type(value).__name__}")
    path = os.path.abspath(os.fspath(value))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: SQLite database {path!r} does not exist or is not a file")
    with open(path, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise ValueError(f"{where}: {path!r} is not an SQLite 3 database file")
    wal_mode = header[18] == 2 or header[19] == 2
    wal = path + "-wal"
    if wal_mode and os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise ValueError(
            f"{where}: {path!r} is in WAL mode with changes still in {wal!r}; checkpoint them "
            "(PRAGMA wal_checkpoint(TRUNCATE)) or convert the file (PRAGMA journal_mode=DELETE) first"
        )
    return path, wal_mode


def _score_sql(texts: list[str], kwargs: Mapping[str, Any], options: SqlOptions) -> list[RewardResult]:
    n = len(texts)
    golds = column(kwargs, "gold_sql", n, "sql_execution")
    paths = column(kwargs, "db_path", n, "sql_execution")
    results: list[RewardResult | None] = [None] * n
    to_run: dict[tuple[str, str, str], list[int]] = {}
    databases: dict[Any, tuple[str, bool]] = {}
    for i, (text, gold, path) in enumerate(zip(texts, golds, paths)):
        if gold is None:
            results[i] = RewardResult(None, "no gold SQL for this item")
            continue
        if not isinstance(gold, str):
            raise TypeError(f"sql_execution: gold_sql[{i}] must be a string, got {type(gold).__name__}")
        if path not in databases:
            databases[path] = _db_file(path, f"sql_execution: db_path[{i}]")
        db, _ = databases[path]
        pred = extract_sql(text)
        if not pred:
            results[i] = RewardResult(0.0, "no SQL found in the completion", answer=pred)
        elif len(pred) > options.max_sql_chars:
            results[i] = RewardResult(
                0.0, f"SQL too long ({len(pred)} > {options.max_sql_chars} characters)", answer=pred[:200]
            )
        else:
            to_run.setdefault((db, gold, pred), []).append(i)
    if to_run:
        keys = list(to_run)
        pool = get_pool("sql", options.workers or default_workers(), options.memory_mb)
        immutable = dict(databases.values())
        items = [
            (db, gold, pred, float(options.query_timeout_s), options.max_rows, options.max_bytes, options.comparison)
            + (immutable[db],)
            for db, gold, pred in keys
        ]
        hard = options.hard_timeout_s or 2 * options.query_timeout_s + 5
        for (db, gold, pred), outcome in zip(keys, pool.map(items, hard)):
            for i in to_run[(db, gold, pred)]:
                if not outcome.ok:
                    results[i] = RewardResult(0.0, f"not executed: {outcome.error}", answer=pred)
                    continue
                status, score, reason = outcome.value
                if status == "gold_error":
                    if options.on_gold_error == "raise":
                        raise RuntimeError(f"sql_execution: gold_sql[{i}] {short(gold)} failed on {db}: {reason}")
                    results[i] = RewardResult(None if options.on_gold_error == "none" else 0.0, reason, answer=pred)
                else:
                    results[i] = RewardResult(float(score), ("correct: " if score else "wrong: ") + reason, answer=pred)
    return results  # type: ignore[return-value]


sql_execution = RewardFunction(
    "sql_execution",
    _score_sql,
    SqlOptions(),
    columns=("gold_sql", "db_path"),
    doc=__doc__,
)

"""Worker-side SQL execution accuracy check on SQLite (runs inside a reward worker).

Imports only the standard library. Every query -- the model's and the gold one -- runs
on a fresh connection that cannot change anything:

* opened read-only (URI ``mode=ro``) and with ``PRAGMA query_only = ON``;
* ``PRAGMA trusted_schema = OFF`` (no side-effecting functions from the schema),
  ``temp_store = MEMORY`` (sorting and temporary tables never touch the disk);
* an authorizer that allows only reading: SELECT, reading columns, functions other than
  ``load_extension``/``fts3_tokenizer``/file access, and recursive CTEs; ATTACH,
  PRAGMA, writes, schema changes, transactions and the rest are denied;
* limits: no attached databases, strings/blobs at most ``max_bytes``;
* one statement only (``sqlite3`` refuses more);
* a time limit through the progress handler (checked every 1000 VM steps), a cap on
  rows and bytes fetched; the pool adds a hard per-item timeout and a memory limit,
  and the worker process cannot write files at all (``RLIMIT_FSIZE = 0``).
"""

from __future__ import annotations

import collections
import os
import re
import sqlite3
import time
import urllib.parse

_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, _SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "fts5", "sqlite_dbpage"}
_STRINGS_AND_COMMENTS = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)", re.DOTALL
)
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
_GOLD_CACHE: collections.OrderedDict[tuple, list[tuple]] = collections.OrderedDict()
_GOLD_CACHE_ENTRIES = 256
_GOLD_CACHE_MAX_BYTES = 1 << 20  # only small gold results are cached


class QueryError(Exception):
    """A query that could not be run to completion; the message says why."""


def has_order_by(sql: str) -> bool:
    """Whether ``sql`` has an ORDER BY outside string literals and comments (anywhere, as Spider's evaluator)."""
    return _ORDER_BY.search(_STRINGS_AND_COMMENTS.sub(" ", sql)) is not None


def _authorizer(action: int, arg1, arg2, db_name, trigger) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _connect(db_path: str, timeout_s: float, max_bytes: int, immutable: bool) -> sqlite3.Connection:
    # immutable=1 (WAL-mode files, checked by the parent to have no pending -wal): SQLite then
    # reads the main file only and creates no -wal/-shm files beside it
    uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro" + ("&immutable=1" if immutable else "")
    connection = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA query_only = ON")
    connection.execute("PRAGMA trusted_schema = OFF")
    connection.execute("PRAGMA temp_store = MEMORY")
    if hasattr(connection, "setlimit"):
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)  # type: ignore[attr-defined]  # Python >= 3.11
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1000, max_bytes))  # type: ignore[attr-defined]
    connection.set_authorizer(_authorizer)
    return connection


def _value_bytes(value) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 8


def run_query(
    db_path: str, sql: str, timeout_s: float, max_rows: int, max_bytes: int, immutable: bool = False
) -> tuple[list[tuple], int]:
    """``(rows, approximate bytes)`` of one read-only query; raises :class:`QueryError`."""
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        raise QueryError("empty query")
    try:
        connection = _connect(db_path, timeout_s, max_bytes, immutable)
    except sqlite3.Error as exc:
        raise QueryError(f"cannot open the database read-only: {exc}") from None
    deadline = time.monotonic() + timeout_s
    expired = []

    def progress() -> int:
        if time.monotonic() > deadline:
            expired.append(True)
            return 1  # interrupts the statement
        return 0

    connection.set_progress_handler(progress, 1000)
    rows: list[tuple] = []
    size = 0
    try:
        cursor = connection.execute(sql)
        for row in cursor:
            rows.append(row)
            size += 16 + sum(_value_bytes(v) for v in row)
            if len(rows) > max_rows:
                raise QueryError(f"result too large (more than {max_rows} rows)")
            if size > max_bytes:
                raise QueryError(f"result too large (more than {max_bytes} bytes)")
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as exc:
        if expired:
            raise QueryError(f"timed out after {timeout_s:g} s") from None
        raise QueryError(f"{type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    return rows, size


def _gold_rows(db_path: str, sql: str, timeout_s: float, max_rows: int, max_bytes: int, immutable: bool) -> list[tuple]:
    stat = os.stat(db_path)
    key = (os.path.realpath(db_path), stat.st_ino, stat.st_size, stat.st_mtime_ns, sql, timeout_s, max_rows, max_bytes)
    if key in _GOLD_CACHE:
        _GOLD_CACHE.move_to_end(key)
        return _GOLD_CACHE[key]
    rows, size = run_query(db_path, sql, timeout_s, max_rows, max_bytes, immutable)
    if size <= _GOLD_CACHE_MAX_BYTES:
        _GOLD_CACHE[key] = rows
        if len(_GOLD_CACHE) > _GOLD_CACHE_ENTRIES:
            _GOLD_CACHE.popitem(last=False)
    return rows


def compare_results(gold: list[tuple], pred: list[tuple], mode: str) -> bool:
    """Whether two results match: ``"ordered"`` lists, ``"unordered"`` multisets or ``"set"`` of rows."""
    if mode == "ordered":
        return gold == pred
    if mode == "unordered":
        return collections.Counter(gold) == collections.Counter(pred)
    if mode == "set":
        return set(gold) == set(pred)
    raise ValueError(f"unknown comparison mode {mode!r}")


def execute(
    db_path: str,
    gold_sql: str,
    pred_sql: str,
    timeout_s: float,
    max_rows: int,
    max_bytes: int,
    comparison: str,
    immutable: bool = False,
) -> list:
    """``[status, score, reason]``: status "ok" (score 0/1) or "gold_error" (gold query failed)."""
    try:
        gold = _gold_rows(db_path, gold_sql, timeout_s, max_rows, max_bytes, immutable)
    except (QueryError, OSError) as exc:
        return ["gold_error", 0, f"gold SQL failed: {exc}"]
    try:
        pred, _ = run_query(db_path, pred_sql, timeout_s, max_rows, max_bytes, immutable)
    except QueryError as exc:
        return ["ok", 0, f"predicted SQL failed: {exc}"]
    # "multiset": Spider's rule, in order exactly when the gold query orders its rows
    mode = ("ordered" if has_order_by(gold_sql) else "unordered") if comparison == "multiset" else comparison
    if compare_results(gold, pred, mode):
        return ["ok", 1, f"results match ({mode}, {len(gold)} rows)"]
    return ["ok", 0, f"results differ ({mode}; gold {len(gold)} rows, predicted {len(pred)} rows)"]

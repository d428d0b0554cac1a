"""Text-to-SQL data: BIRD and Spider layouts, schema prompts, execution accuracy.

The paper (arXiv 2605.04066) trains and evaluates text-to-SQL on BIRD (train/dev) and
Spider (dev) with a binary execution reward. This module turns those folders into
examples for the trainer and the evaluator:

- :func:`load_sql_examples` reads a questions file (JSON array or JSON lines) in either
  layout and returns an :class:`apmpo.data.loaders.ExampleSet` of dicts with
  ``prompt`` (the rendered user text: schema, evidence, question, instruction),
  ``answer`` (the gold SQL, for logging), ``question``, ``gold_sql``, ``db_id``,
  ``db_path`` (absolute), ``evidence`` and ``schema``. ``gold_sql`` and ``db_path``
  are the keyword arguments of :func:`apmpo.rewards.sql_execution` (TRL's contract:
  dataset columns become reward kwargs).

  ======== =============================== ======== ===================================
  layout   questions file                  gold     databases
  ======== =============================== ======== ===================================
  spider   train_spider.json, dev.json     query    database/<db_id>/<db_id>.sqlite
  bird     train/train.json, dev/dev.json  SQL      <split>_databases/<db_id>/<db_id>.sqlite
  ======== =============================== ======== ===================================

  BIRD rows also carry ``evidence`` (external knowledge); a row of either layout that
  has an ``evidence`` field gets it into its prompt (``use_evidence=False`` leaves it
  out).
- :func:`database_schema` reads the ``CREATE`` statements of tables and views from
  ``sqlite_master`` over a read-only connection (URI ``mode=ro``, ``immutable`` when
  no ``-wal`` file exists, ``PRAGMA query_only``, a time limit, bounded value sizes),
  optionally followed by N sample rows per table; :func:`build_sql_prompt` assembles
  the user text. The text is a plain user message:
  :func:`apmpo.data.prompts.render_prompt` applies the tokenizer's chat template (and
  an optional system prompt) on top of it, like for every other task.
- :func:`evaluate_sql` scores predictions by execution through
  :func:`apmpo.rewards.sql_execution` (this module never executes model SQL itself):
  Spider-style multiset comparison by default, BIRD-style set comparison as an option.
  :func:`read_predictions` reads Spider's one-query-per-line files, BIRD's JSON
  ``{"0": "SQL\\t----- bird -----\\tdb_id"}`` files and JSON lines;
  :func:`evaluate_sql_predictions` scores such a file on a data folder, and
  :func:`export_sql_examples` writes a split as JSON lines for tools that read plain
  files. Both are on the command line: ``python -m apmpo.data.sql {eval,export}``.
- :func:`make_sql_task` has the built-in task signature (``make(split, n, seed,
  **options)``), reading the shipped benchmark (``apmpo/data/sqlbench``) by default or
  a BIRD/Spider folder given as ``root``; it is registered as the task ``"sql"`` in
  :data:`apmpo.tasks.BUILTIN_TASKS` (verifier: the reward registered as ``"sql"``,
  :data:`apmpo.rewards.sql_execution`).

Every problem in the input is a ``ValueError`` naming the file, the row (1-based) and
the field: a missing database (with the expected path), a file that is not SQLite
(header check), a row without a question or gold query, a ``db_id`` that is not a plain
folder name. With ``on_bad_row="skip"`` such rows are left out and counted in
``ExampleSet.skipped_rows``; a file that cannot be read at all is always an error.

Departures from the official tools: the schema text is ours (the paper does not give
its prompt); it follows the common "CREATE TABLE + example rows" form (Rajkumar et al.,
2022). Result comparison is the reward's (see :mod:`apmpo.rewards`), not Spider's
test-suite evaluator (no column-permutation matching, no value-variant databases).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apmpo import rewards
from apmpo.data.loaders import (
    ExampleSet,
    RowError,
    SkippedRow,
    no_usable_examples,
    read_json_rows,
    read_jsonl_rows,
)
from apmpo.io import atomic_write_text
from apmpo.rewards import score_value

__all__ = [
    "SQL_LAYOUTS",
    "SQL_INSTRUCTION",
    "SQLITE_HEADER",
    "SQLBENCH_ROOT",
    "SQL_TASK_OPTIONS",
    "check_sqlite_file",
    "database_schema",
    "SCHEMA_STYLES",
    "build_sql_prompt",
    "find_sql_split",
    "load_sql_examples",
    "make_sql_task",
    "read_predictions",
    "evaluate_sql",
    "evaluate_sql_predictions",
    "export_sql_examples",
    "main",
    "SqlEvalResult",
]

SQL_LAYOUTS: tuple[str, ...] = ("spider", "bird")
SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite 3 database file."""
SQL_INSTRUCTION = "Write one SQLite query that answers the question. Put the query in a ```sql code block."
"""Answer-format sentence closing each prompt (option ``instruction``; "" for none)."""
SQLBENCH_ROOT = Path(__file__).resolve().parent / "sqlbench"
"""The shipped self-made benchmark (Spider layout), see docs/sql.md."""

_GOLD_FIELD = {"spider": "query", "bird": "SQL"}
_SPLIT_FILES = {
    # split -> candidate (questions file, database folder) pairs, relative to the root
    "train": (
        ("train_spider.json", "database"),
        ("train/train.json", "train/train_databases"),
        ("train.json", "train_databases"),
    ),
    "dev": (
        ("dev.json", "database"),
        ("dev/dev.json", "dev/dev_databases"),
        ("dev.json", "dev_databases"),
    ),
    "test": (
        ("test.json", "test_database"),
        ("test/test.json", "test/test_databases"),
        ("test.json", "test_databases"),
    ),
}
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "eval": "dev", "validation": "dev", "test": "test"}
_BAD_ROW_MODES = ("error", "skip")
_SCHEMA_TIME_LIMIT_S = 10.0
_MAX_SAMPLE_ROWS = 20


# ---------------------------------------------------------------------------- databases


def check_sqlite_file(path: str | os.PathLike) -> Path:
    """``path`` as an absolute Path if it is a SQLite 3 database file.

    Raises FileNotFoundError when nothing is there and ValueError when it is a folder,
    empty, or does not start with the SQLite header (the message shows the first bytes).
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: is not a file (a SQLite database file was expected)")
    with open(path, "rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if not head:
        raise ValueError(f"{path}: is empty, not a SQLite database")
    if head != SQLITE_HEADER:
        raise ValueError(
            f"{path}: is not a SQLite database (it starts with {head!r}, a SQLite file starts with {SQLITE_HEADER!r})"
        )
    return path


def _open_readonly(path: Path, time_limit_s: float) -> sqlite3.Connection:
    """A read-only connection (``mode=ro`` + ``query_only``) that aborts after the time limit.

    Without a ``-wal`` file beside it the whole database is in the file, and it is opened
    ``immutable`` as well: no locks, and a WAL-mode database gets no ``-wal``/``-shm``
    files created next to it (plain ``mode=ro`` would leave both behind).
    """
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    connection = sqlite3.connect(f"{path.as_uri()}?{flags}", uri=True, check_same_thread=False)
    connection.execute("PRAGMA query_only = ON")
    deadline = time.monotonic() + time_limit_s
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 100)
    return connection


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _format_value(value: Any, max_chars: int) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<blob {len(value)} bytes>"
    text = " ".join(str(value).split()) if isinstance(value, str) else repr(value)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _sample_rows_block(connection: sqlite3.Connection, table: str, n: int, max_chars: int) -> str | None:
    """``/* n example rows ... */`` for ``table`` (None when it has no columns or rows)."""
    quoted = _quote_identifier(table)
    columns = [row[1] for row in connection.execute(f"PRAGMA table_info({quoted})")]
    if not columns:
        return None
    # Values are cut in SQL so a huge text or blob never reaches Python whole.
    limit = max_chars + 1
    selected = ", ".join(
        f"CASE WHEN typeof({c}) IN ('text', 'blob') AND length({c}) > {limit} THEN substr({c}, 1, {limit}) ELSE {c} END"
        for c in map(_quote_identifier, columns)
    )
    rows = connection.execute(f"SELECT {selected} FROM {quoted} LIMIT ?", (n,)).fetchall()
    if not rows:
        return None
    lines = [f"/* {len(rows)} example row{'s' if len(rows) > 1 else ''} from table {table}:"]
    lines.append(" | ".join(columns))
    lines.extend(" | ".join(_format_value(v, max_chars) for v in row) for row in rows)
    lines.append("*/")
    return "\n".join(lines)


def _create_statement(connection: sqlite3.Connection, kind: str, name: str, sql: str) -> str:
    """The statement as stored in sqlite_master, trailing spaces removed, with a final ";"."""
    statement = "\n".join(line.rstrip() for line in sql.strip().splitlines())
    return statement if statement.endswith(";") else statement + ";"


def _compact_line(connection: sqlite3.Connection, kind: str, name: str, sql: str) -> str:
    """``table(col, fk_col -> other.col, ...)``; views are prefixed with "view "."""
    quoted = _quote_identifier(name)
    references = {
        row[3]: f"{row[2]}.{row[4] or '?'}" for row in connection.execute(f"PRAGMA foreign_key_list({quoted})")
    }
    columns = [row[1] for row in connection.execute(f"PRAGMA table_info({quoted})")]
    parts = [f"{c} -> {references[c]}" if c in references else c for c in columns]
    return f"{'view ' if kind == 'view' else ''}{name}({', '.join(parts)})"


SCHEMA_STYLES: dict[str, tuple[Any, str]] = {
    "create": (_create_statement, "\n\n"),
    "compact": (_compact_line, "\n"),
}
"""Schema text styles: name -> (one table's text, separator between blocks).

"create": the CREATE statements as stored (types, keys, constraints); "compact": one
line per table, ``orders(order_id, customer_id -> customers.customer_id, ...)``: no
types or constraints, about 40% of the characters on sqlbench (for small models and
short contexts)."""


def database_schema(
    db_path: str | os.PathLike,
    *,
    sample_rows: int = 0,
    max_value_chars: int = 40,
    style: str = "create",
    time_limit_s: float = _SCHEMA_TIME_LIMIT_S,
) -> str:
    """The tables and views of a SQLite database as text, in creation order.

    Read from ``sqlite_master`` over a read-only connection; internal ``sqlite_*``
    tables, indexes and triggers are left out. ``style`` is a key of
    :data:`SCHEMA_STYLES`: "create" (the ``CREATE`` statements) or "compact" (one line
    per table). With ``sample_rows`` = N > 0 each table is followed by a comment with its
    first N rows (text values cut to ``max_value_chars``, blobs shown by size). Raises
    ValueError naming the file if it is not a readable SQLite database or reading takes
    longer than ``time_limit_s``.
    """
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or not 0 <= sample_rows <= _MAX_SAMPLE_ROWS:
        raise ValueError(f"sample_rows must be an integer in [0, {_MAX_SAMPLE_ROWS}], got {sample_rows!r}")
    if isinstance(max_value_chars, bool) or not isinstance(max_value_chars, int) or max_value_chars < 8:
        raise ValueError(f"max_value_chars must be an integer >= 8, got {max_value_chars!r}")
    if style not in SCHEMA_STYLES:
        raise ValueError(f"style must be one of {', '.join(SCHEMA_STYLES)}, got {style!r}")
    describe, separator = SCHEMA_STYLES[style]
    path = check_sqlite_file(db_path)
    try:
        connection = _open_readonly(path, time_limit_s)
    except sqlite3.Error as exc:
        raise ValueError(f"{path}: cannot open the database read-only ({exc})") from None
    try:
        entries = connection.execute(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE type IN ('table', 'view') AND sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY rowid"
        ).fetchall()
        blocks: list[str] = []
        for kind, name, sql in entries:
            blocks.append(describe(connection, kind, name, sql))
            virtual = sql.lstrip().upper().startswith("CREATE VIRTUAL")
            if sample_rows and kind == "table" and not virtual:
                sample = _sample_rows_block(connection, name, sample_rows, max_value_chars)
                if sample:
                    blocks.append(sample)
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise ValueError(f"{path}: reading the schema took longer than {time_limit_s} s") from None
        raise ValueError(f"{path}: cannot read the schema ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: cannot read the schema ({exc})") from None
    finally:
        connection.close()
    if not blocks:
        raise ValueError(f"{path}: the database has no tables")
    return separator.join(blocks)


def build_sql_prompt(
    question: str,
    schema: str,
    *,
    evidence: str | None = None,
    instruction: str = SQL_INSTRUCTION,
) -> str:
    """The user-turn text: schema, optional external knowledge, question, instruction."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    if not isinstance(schema, str) or not schema.strip():
        raise ValueError("schema must be a non-empty string (see database_schema)")
    parts = [f"Database schema (SQLite):\n\n{schema.strip()}"]
    if evidence and evidence.strip():
        parts.append(f"External knowledge: {evidence.strip()}")
    parts.append(f"Question: {question.strip()}")
    if instruction and instruction.strip():
        parts.append(instruction.strip())
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------- files


def find_sql_split(root: str | os.PathLike, split: str = "dev") -> tuple[Path, Path]:
    """(questions file, database folder) of ``split`` under a Spider or BIRD folder.

    Looks for, in order: Spider's ``train_spider.json`` / ``dev.json`` beside
    ``database/``; BIRD's ``train/train.json`` / ``dev/dev.json`` beside
    ``<split>_databases/``; and a BIRD split folder itself (``dev.json`` beside
    ``dev_databases/``). ``split`` is "train", "dev" (alias "eval", "validation") or
    "test".
    """
    root = Path(root).expanduser()
    key = _SPLIT_ALIASES.get(split)
    if key is None:
        raise ValueError(f"split must be one of {', '.join(_SPLIT_ALIASES)}, got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (a Spider or BIRD data folder was expected)")
    tried = []
    for questions, databases in _SPLIT_FILES[key]:
        tried.append(f"{questions} with {databases}/")
        if (root / questions).is_file() and (root / databases).is_dir():
            return root / questions, root / databases
    raise FileNotFoundError(f"{root}: no {key} split found; looked for " + "; ".join(tried))


def _default_db_root(questions: Path) -> Path:
    folder = questions.parent
    stem = questions.stem.removesuffix("_spider")  # train_spider.json -> train
    candidates = [folder / "database", folder / f"{stem}_databases", folder / f"{stem}_database"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"{questions}: no database folder found beside it (looked for "
        + ", ".join(f"{c.name}/" for c in candidates)
        + "); pass db_root= (the folder holding <db_id>/<db_id>.sqlite)"
    )


def _read_rows(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    """(row position, row or RowError) for a JSON array file or a JSON lines file."""
    return read_jsonl_rows(path) if path.suffix.lower() == ".jsonl" else read_json_rows(path)


def _detect_layout(row: Mapping[str, Any], layout: str) -> str:
    if layout != "auto":
        return layout
    found = [name for name in SQL_LAYOUTS if _GOLD_FIELD[name] in row]
    if len(found) != 1:
        fields = ", ".join(map(str, row)) or "(none)"
        raise RowError(
            None,
            "cannot tell the layout: a Spider row has a 'query' field, a BIRD row an 'SQL' field; "
            f"this row has {fields}; pass layout='spider' or layout='bird'",
        )
    return found[0]


def _text_field(row: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    if name not in row or row[name] is None:
        if not required:
            return ""
        fields = ", ".join(map(str, row)) or "(none)"
        raise RowError(name, f"missing (this row has {fields})")
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RowError(name, "empty")
    return value


def _check_db_id(db_id: str) -> None:
    if db_id in (".", "..") or any(ch in db_id for ch in "/\\\0") or db_id != db_id.strip():
        raise RowError("db_id", f"{db_id!r} is not a plain folder name")


@dataclass
class _Database:
    path: Path | None = None
    schema: str | None = None
    error: str | None = None


def _resolve_database(db_root: Path, db_id: str, sample_rows: int, max_value_chars: int, style: str) -> _Database:
    expected = (db_root / db_id / f"{db_id}.sqlite").absolute()
    try:
        path = check_sqlite_file(expected)
    except FileNotFoundError:
        return _Database(error=f"database {db_id!r} not found: expected {expected}")
    except ValueError as exc:
        return _Database(error=f"database {db_id!r}: {exc}")
    try:
        schema = database_schema(path, sample_rows=sample_rows, max_value_chars=max_value_chars, style=style)
    except ValueError as exc:
        return _Database(error=f"database {db_id!r}: {exc}")
    return _Database(path=path, schema=schema)


def load_sql_examples(
    path: str | os.PathLike,
    *,
    split: str = "dev",
    db_root: str | os.PathLike | None = None,
    layout: str = "auto",
    sample_rows: int = 0,
    max_value_chars: int = 40,
    schema_style: str = "create",
    use_evidence: bool = True,
    instruction: str = SQL_INSTRUCTION,
    on_bad_row: str = "error",
    limit: int | None = None,
) -> ExampleSet:
    """Text-to-SQL examples from a Spider or BIRD questions file (or data folder).

    Args:
        path: a questions file (``.json`` array or ``.jsonl``), or a Spider/BIRD folder
            in which :func:`find_sql_split` finds ``split``.
        split: with ``path`` a folder: "train", "dev" (or "eval") or "test".
        db_root: the folder holding ``<db_id>/<db_id>.sqlite``. Default: the one found
            by :func:`find_sql_split`, or beside the file (``database/``,
            ``<stem>_databases/``).
        layout: "spider" (gold in ``query``), "bird" (gold in ``SQL``) or "auto" (from
            the first row's fields).
        sample_rows: example rows per table shown in the prompt (0: schema only).
        max_value_chars: sample values longer than this are cut.
        schema_style: "create" (CREATE statements) or "compact" (one line per table),
            see :data:`SCHEMA_STYLES`.
        use_evidence: put a row's ``evidence`` (BIRD's external knowledge) in its prompt.
        instruction: the answer-format sentence closing the prompt ("" for none).
        on_bad_row: "error" raises at the first bad row; "skip" leaves it out and
            records it in ``skipped_rows`` (a missing or broken database included).
        limit: stop after this many accepted examples.

    Returns:
        An ExampleSet; each example has prompt, answer (= gold_sql), question, gold_sql,
        db_id, db_path, evidence and schema.
    """
    if layout not in ("auto",) + SQL_LAYOUTS:
        raise ValueError(f"layout must be 'auto', 'spider' or 'bird', got {layout!r}")
    if on_bad_row not in _BAD_ROW_MODES:
        raise ValueError(f"on_bad_row must be one of {_BAD_ROW_MODES}, got {on_bad_row!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or not 0 <= sample_rows <= _MAX_SAMPLE_ROWS:
        raise ValueError(f"sample_rows must be an integer in [0, {_MAX_SAMPLE_ROWS}], got {sample_rows!r}")
    if schema_style not in SCHEMA_STYLES:
        raise ValueError(f"schema_style must be one of {', '.join(SCHEMA_STYLES)}, got {schema_style!r}")
    path = Path(path).expanduser()
    if path.is_dir():
        questions, found_root = find_sql_split(path, split)
    elif path.is_file():
        if path.suffix.lower() not in (".json", ".jsonl"):
            raise ValueError(f"{path}: expected a .json or .jsonl questions file, got {path.suffix or 'no suffix'!r}")
        questions, found_root = path, None
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    if db_root is not None:
        databases = Path(db_root).expanduser()
        if not databases.is_dir():
            raise FileNotFoundError(f"db_root {databases}: no such folder")
    else:
        databases = found_root if found_root is not None else _default_db_root(questions)

    examples: list[dict[str, Any]] = []
    skipped: list[SkippedRow] = []
    cache: dict[str, _Database] = {}
    resolved_layout: str | None = None

    for where, row in _read_rows(questions):
        try:
            if isinstance(row, RowError):
                raise row
            if resolved_layout is None:
                try:
                    resolved_layout = _detect_layout(row, layout)
                except RowError as exc:  # a layout that does not fit the file is never skipped
                    raise ValueError(f"{questions}: {where}: {exc.reason}") from None
            question = _text_field(row, "question")
            gold_field = _GOLD_FIELD[resolved_layout]
            gold_sql = _text_field(row, gold_field)
            db_id = _text_field(row, "db_id")
            _check_db_id(db_id)
            evidence = _text_field(row, "evidence", required=False)
            database = cache.get(db_id)
            if database is None:
                database = cache[db_id] = _resolve_database(
                    databases, db_id, sample_rows, max_value_chars, schema_style
                )
            if database.error is not None or database.schema is None:
                raise RowError("db_id", database.error or f"no schema for {db_id!r}")
        except RowError as exc:
            if on_bad_row == "error":
                field_part = f", field {exc.field!r}" if exc.field else ""
                raise ValueError(f"{questions}: {where}{field_part}: {exc.reason}") from None
            skipped.append(SkippedRow(where=where, field=exc.field, reason=exc.reason))
            continue
        prompt = build_sql_prompt(
            question, database.schema, evidence=evidence if use_evidence else None, instruction=instruction
        )
        example = {
            "prompt": prompt,
            "answer": gold_sql,
            "question": question,
            "gold_sql": gold_sql,
            "db_id": db_id,
            "db_path": str(database.path),
            "evidence": evidence,
            "schema": database.schema,
        }
        for name, value in row.items():  # keep extra metadata (category, difficulty, ...)
            if name not in example and name != gold_field and _is_plain(value):
                example[name] = value
        examples.append(example)
        if limit is not None and len(examples) >= limit:
            break

    if not examples:
        raise no_usable_examples(questions, skipped)
    return ExampleSet(
        examples=examples,
        path=str(questions),
        prompt_column="question",
        answer_source=_GOLD_FIELD[resolved_layout or "spider"],
        skipped_rows=skipped,
    )


def _is_plain(value: Any) -> bool:
    """Scalars only: Spider's parsed ``sql`` trees and token lists are not kept."""
    return value is None or isinstance(value, (str, int, float, bool))


# ---------------------------------------------------------------------------- built-in task

SQL_TASK_OPTIONS: dict[str, Any] = {
    "root": None,
    "db_root": None,
    "layout": "auto",
    "sample_rows": 0,
    "schema_style": "create",
    "use_evidence": True,
    "instruction": SQL_INSTRUCTION,
    "on_bad_row": "error",
}
"""Options of :func:`make_sql_task` and their defaults."""


def make_sql_task(
    split: str,
    n: int | None,
    seed: int = 0,
    *,
    root: str | os.PathLike | None = None,
    db_root: str | os.PathLike | None = None,
    layout: str = "auto",
    sample_rows: int = 0,
    schema_style: str = "create",
    use_evidence: bool = True,
    instruction: str = SQL_INSTRUCTION,
    on_bad_row: str = "error",
) -> list[dict[str, Any]]:
    """``n`` examples of ``split`` ("train", or "eval" = the dev file), the built-in task signature.

    ``root`` is a Spider or BIRD folder, or a questions file (default: the shipped
    benchmark, :data:`SQLBENCH_ROOT`). The split's size is fixed by its file: ``n=None``
    or ``n`` at least the file's size takes every example in file order; a smaller
    ``n`` takes a subset drawn with ``seed`` (kept in file order), so that a few hundred
    questions from BIRD's train file are not all from its first databases.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    examples = list(
        load_sql_examples(
            SQLBENCH_ROOT if root is None else root,
            split="train" if split == "train" else "dev",
            db_root=db_root,
            layout=layout,
            sample_rows=sample_rows,
            schema_style=schema_style,
            use_evidence=use_evidence,
            instruction=instruction,
            on_bad_row=on_bad_row,
        )
    )
    if n is None or n >= len(examples):
        return examples
    chosen = sorted(random.Random(f"apmpo|sql|{split}|{seed}").sample(range(len(examples)), n))
    return [examples[i] for i in chosen]


# ---------------------------------------------------------------------------- evaluation


def read_predictions(path: str | os.PathLike) -> list[str]:
    """Predicted SQL strings, in question order, from a predictions file.

    - ``.txt`` / ``.sql``: Spider's format, one query per line (a tab and anything after
      it, e.g. a db_id, is dropped; blank lines are empty predictions);
    - ``.json``: BIRD's format, an object ``{"0": "SQL\\t----- bird -----\\tdb_id", ...}``
      with keys 0..n-1, or a JSON array of strings;
    - ``.jsonl``: one object per line with a ``prediction``, ``completion`` or ``sql``
      field (completions may hold the query in a fenced code block).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".txt", ".sql"):
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        return [line.split("\t", 1)[0].strip() for line in lines]
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        if isinstance(data, list):
            items = list(enumerate(data))
        elif isinstance(data, dict):
            try:
                keys = sorted(data, key=int)
            except ValueError:
                raise ValueError(f"{path}: BIRD predictions need keys 0..n-1, got {next(iter(data))!r}") from None
            if [int(k) for k in keys] != list(range(len(keys))):
                raise ValueError(f"{path}: BIRD predictions need keys 0..{len(keys) - 1} without gaps")
            items = [(int(k), data[k]) for k in keys]
        else:
            raise ValueError(f"{path}: expected a JSON object or array, got {type(data).__name__}")
        predictions = []
        for index, value in items:
            if not isinstance(value, str):
                raise ValueError(f"{path}: entry {index}: expected a string, got {type(value).__name__}")
            predictions.append(value.split("\t----- bird -----\t", 1)[0].strip())
        return predictions
    if suffix == ".jsonl":
        predictions = []
        for where, row in _read_rows(path):
            if isinstance(row, RowError):
                raise ValueError(f"{path}: {where}: {row.reason}")
            for name in ("prediction", "completion", "sql"):
                if name in row:
                    value = row[name]
                    if not isinstance(value, str):
                        raise ValueError(
                            f"{path}: {where}, field {name!r}: expected a string, got {type(value).__name__}"
                        )
                    predictions.append(value)
                    break
            else:
                raise ValueError(
                    f"{path}: {where}: no 'prediction', 'completion' or 'sql' field (has {', '.join(row) or 'none'})"
                )
        return predictions
    raise ValueError(
        f"{path}: unsupported predictions file {suffix or '(no suffix)'!r}; use .txt, .sql, .json or .jsonl"
    )


@dataclass
class SqlEvalResult:
    """Execution accuracy over a set of questions."""

    accuracy: float
    """Mean score (the share of predictions whose result matches the gold result)."""
    num_examples: int
    """Number of questions scored."""
    comparison: str
    """"multiset" (Spider-style) or "set" (BIRD-style), or the reward's "unordered" / "ordered"."""
    scores: list[float] = field(default_factory=list)
    """Per question, in order: 1.0 or 0.0."""
    reasons: list[str] = field(default_factory=list)
    """Per question: the reward's reason (why a prediction failed)."""
    by_group: dict[str, dict[str, float]] = field(default_factory=dict)
    """Accuracy and count per db_id and per category/difficulty when the examples have them."""

    def summary(self) -> str:
        """One line: accuracy, count, comparison."""
        correct = int(round(sum(self.scores)))
        return f"execution accuracy {self.accuracy:.4f} ({correct}/{self.num_examples}, {self.comparison} comparison)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the per-question lists)."""
        return {
            "accuracy": self.accuracy,
            "num_examples": self.num_examples,
            "comparison": self.comparison,
            "by_group": self.by_group,
        }


def evaluate_sql(
    examples: Sequence[Mapping[str, Any]],
    predictions: Sequence[Any],
    *,
    comparison: str = "multiset",
    group_by: Sequence[str] = ("db_id", "category", "difficulty"),
    **reward_kwargs: Any,
) -> SqlEvalResult:
    """Execution accuracy of ``predictions`` (SQL strings or completions) on ``examples``.

    Each prediction is scored by :data:`apmpo.rewards.sql_execution` against its
    example's ``gold_sql`` on its ``db_path`` with ``comparison`` ("multiset":
    Spider-style, row multiplicity counts and order only when the gold query orders;
    "set": BIRD-style set comparison; the reward's "unordered" and "ordered" also work).
    Extra keyword arguments are options of the reward (``query_timeout_s``, ``max_rows``,
    ``workers``, ...; an unknown name raises). A prediction may be bare SQL or a
    completion with the query in a fenced block. Accuracy per ``group_by`` column is
    reported when every example has it.
    """
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} questions; they must match one to one")
    if not examples:
        raise ValueError("no examples to evaluate")
    for index, example in enumerate(examples, start=1):
        for name in ("gold_sql", "db_path"):
            if not isinstance(example.get(name), str):
                raise ValueError(
                    f"example {index}: field {name!r} missing or not a string (load with load_sql_examples)"
                )
    scores, reasons = _score_with_reward(
        list(predictions),
        [example["gold_sql"] for example in examples],
        [example["db_path"] for example in examples],
        comparison,
        reward_kwargs,
    )
    by_group: dict[str, dict[str, float]] = {}
    for column in group_by:
        values = [example.get(column) for example in examples]
        if any(v is None for v in values):
            continue
        totals: dict[str, list[float]] = {}
        for value, score in zip(values, scores):
            totals.setdefault(f"{column}={value}", []).append(score)
        for key, group in sorted(totals.items()):
            by_group[key] = {"accuracy": sum(group) / len(group), "count": float(len(group))}
    return SqlEvalResult(
        accuracy=sum(scores) / len(scores),
        num_examples=len(scores),
        comparison=comparison,
        scores=scores,
        reasons=reasons,
        by_group=by_group,
    )


def _score_with_reward(
    completions: list[Any], gold_sql: list[str], db_path: list[str], comparison: str, reward_kwargs: dict
) -> tuple[list[float], list[str]]:
    """Scores and reasons from :data:`apmpo.rewards.sql_execution` (unknown options raise)."""
    reward = rewards.sql_execution.configure(comparison=comparison, **reward_kwargs)
    results = reward.score_items(completions, gold_sql=gold_sql, db_path=db_path)
    return [score_value(r.score) for r in results], [str(r.reason) for r in results]


def evaluate_sql_predictions(
    data: str | os.PathLike,
    predictions: str | os.PathLike | Sequence[str] | None,
    *,
    split: str = "dev",
    db_root: str | os.PathLike | None = None,
    layout: str = "auto",
    comparison: str = "multiset",
    **reward_kwargs: Any,
) -> SqlEvalResult:
    """Execution accuracy of a predictions file (or list) on a Spider/BIRD folder or questions file.

    ``predictions`` is a path read by :func:`read_predictions`, a list of strings in
    question order, or None to score the gold queries against themselves (a check that
    every database is present and every gold query runs: the accuracy must be 1.0).
    """
    examples = load_sql_examples(data, split=split, db_root=db_root, layout=layout)
    if predictions is None:
        predicted = [example["gold_sql"] for example in examples]
    elif isinstance(predictions, (str, os.PathLike)):
        predicted = read_predictions(predictions)
        if len(predicted) != len(examples):
            raise ValueError(
                f"{predictions}: {len(predicted)} predictions but {examples.path} has {len(examples)} questions"
            )
    else:
        predicted = list(predictions)
    return evaluate_sql(list(examples), predicted, comparison=comparison, **reward_kwargs)


def export_sql_examples(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "dev",
    **options: Any,
) -> ExampleSet:
    """Write the examples of a Spider/BIRD split as JSON lines, for tools that read plain files.

    Each line holds an example as :func:`load_sql_examples` builds it (prompt with the
    schema, answer = gold SQL, gold_sql, absolute db_path, ...), so ``apmpo eval --data
    OUT --reward sql`` and ``apmpo train data.train=OUT reward.functions={sql: 1.0}``
    read it with the generic file loader. ``options`` are those of
    :func:`load_sql_examples`. The db paths are absolute: export on the machine that runs.
    """
    examples = load_sql_examples(data, split=split, **options)
    text = "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples)
    _write_text_atomic(Path(out), text)
    return examples


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m apmpo.data.sql {eval,export}``: execution accuracy, or examples as JSON lines."""
    parser = argparse.ArgumentParser(
        prog="python -m apmpo.data.sql",
        description="Text-to-SQL data on a Spider or BIRD folder (default: the shipped sqlbench).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("eval", help="execution accuracy of a predictions file (or --gold: a folder check)")
    export = commands.add_parser(
        "export", help="write a split's examples (prompt, gold_sql, db_path, ...) as JSON lines"
    )
    for sub in (evaluate, export):
        sub.add_argument(
            "--data",
            default=str(SQLBENCH_ROOT),
            help="a Spider/BIRD folder or a questions file (default: the shipped sqlbench)",
        )
        sub.add_argument("--split", default="dev", help="train, dev or test (with --data a folder; default dev)")
        sub.add_argument("--db-root", default=None, help="folder holding <db_id>/<db_id>.sqlite (default: detected)")
    evaluate.add_argument(
        "--predictions", default=None, help="predictions file: .txt/.sql (one query per line), BIRD .json, or .jsonl"
    )
    evaluate.add_argument("--gold", action="store_true", help="score the gold queries against themselves")
    evaluate.add_argument("--comparison", default="multiset", help="multiset (Spider, default) or set (BIRD)")
    evaluate.add_argument("--query-timeout", type=float, default=5.0, help="seconds per query (default 5)")
    evaluate.add_argument("--output", default=None, help="write the per-question scores and reasons to this JSON file")
    export.add_argument("--out", required=True, help="the JSON lines file to write")
    export.add_argument("--sample-rows", type=int, default=0, help="example rows per table in the prompt (default 0)")
    export.add_argument(
        "--schema-style",
        default="create",
        choices=list(SCHEMA_STYLES),
        help="create (CREATE statements, default) or compact (one line per table)",
    )
    export.add_argument("--no-evidence", action="store_true", help="leave BIRD's evidence out of the prompt")
    export.add_argument("--instruction", default=SQL_INSTRUCTION, help="answer-format sentence closing the prompt")
    args = parser.parse_args(argv)
    if args.command == "eval" and args.gold == (args.predictions is not None):
        evaluate.error("give exactly one of --predictions FILE and --gold")
    try:
        if args.command == "export":
            examples = export_sql_examples(
                args.data,
                args.out,
                split=args.split,
                db_root=args.db_root,
                sample_rows=args.sample_rows,
                schema_style=args.schema_style,
                use_evidence=not args.no_evidence,
                instruction=args.instruction,
            )
            print(f"wrote {args.out}: {examples.summary()}")
            return 0
        result = evaluate_sql_predictions(
            args.data,
            None if args.gold else args.predictions,
            split=args.split,
            db_root=args.db_root,
            comparison=args.comparison,
            query_timeout_s=args.query_timeout,
        )
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    for key, group in result.by_group.items():
        print(f"  {key}: {group['accuracy']:.4f} ({int(group['count'])})")
    if args.output:
        payload = {**result.to_dict(), "scores": result.scores, "reasons": result.reasons}
        _write_text_atomic(Path(args.output), json.dumps(payload, indent=1) + "\n")
    return 0


def _write_text_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


if __name__ == "__main__":
    raise SystemExit(main())

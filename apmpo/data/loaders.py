"""Load prompt/answer examples from JSONL, JSON, Parquet or CSV files, shipped files or Hub datasets.

``load_examples(path, ...)`` reads a local file, a file shipped with apmpo
(``shipped:math500`` or ``math500``) or a Hugging Face dataset
(``hf:OWNER/NAME[@CONFIG]:SPLIT``); see :mod:`apmpo.data.sources`. It returns an
:class:`ExampleSet`: a list of dicts, each with
at least ``"prompt"`` (str) and ``"answer"`` (str); every other column of the file is
kept as is, because the trainer passes dataset columns to reward functions as keyword
arguments (TRL's contract: ``db_path``, ``gold_sql``, ``answer_type``, ...).

Column detection (an explicit mapping always wins):

- prompt: the first of ``prompt, problem, question, instruction, input`` present;
- answer: the first of ``answer, final_answer, ground_truth, target`` present; when
  none is, the last ``\\boxed{...}`` of the ``solution`` column (Minerva's layout);
- a string answer with a line starting ``####`` (GSM8K) becomes the text after it,
  and the full text is kept under ``"solution"`` when the file has no such column;
- JSON floats are normalised (``70.0 -> "70"``), lists (OlympiadBench's
  ``final_answer``) become their one element or a ", "-joined string
  (see :func:`apmpo.data.answers.normalize_answer`).

Every bad row raises ``ValueError`` naming the file, the row (JSONL: its 1-based line
number; CSV: data row and line; JSON/Parquet: 1-based row) and the field; with
``on_bad_row="skip"`` the row is skipped and recorded in ``ExampleSet.skipped_rows``.
A column mapping that does not match the file (a named column absent from the header
or first row, or no prompt/answer column found) is always an error, never a skip.

Local files are read with the standard library (JSON, CSV) and pyarrow (Parquet) rather
than ``datasets.load_dataset`` so that errors carry exact line numbers and nothing is
cached on disk; Hub datasets go through ``datasets.load_dataset`` (rows numbered from
1, the column check names ``columns`` instead of ``header``).
:meth:`ExampleSet.to_dataset` converts to a ``datasets.Dataset``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apmpo.data.answers import AnswerError, answer_after_marker, last_boxed, normalize_answer
from apmpo.data.hub import HUB_PREFIX, HubDataset
from apmpo.data.sources import data_reference_problem, resolve_data_reference

__all__ = [
    "ExampleSet",
    "SkippedRow",
    "load_examples",
    "PROMPT_CANDIDATES",
    "ANSWER_CANDIDATES",
    "SUPPORTED_SUFFIXES",
    "RowError",
    "read_json_rows",
    "read_jsonl_rows",
]

PROMPT_CANDIDATES: tuple[str, ...] = ("prompt", "problem", "question", "instruction", "input")
ANSWER_CANDIDATES: tuple[str, ...] = ("answer", "final_answer", "ground_truth", "target")
SOLUTION_COLUMN = "solution"
SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet", ".csv")
_BAD_ROW_MODES = ("error", "skip")


@dataclass(frozen=True)
class SkippedRow:
    """One row left out with ``on_bad_row="skip"``."""

    where: str
    """Row position as printed in errors, e.g. ``"line 887"`` or ``"row 3 (line 5)"``."""
    field: str | None
    """The offending field, or None when the row as a whole was bad (malformed JSON)."""
    reason: str
    """What was wrong, e.g. ``"the answer is null"``."""


@dataclass
class ExampleSet(Sequence):
    """Examples loaded from one file, plus how they were read and what was skipped."""

    examples: list[dict[str, Any]]
    """The accepted rows: dicts with "prompt", "answer" and the kept columns."""
    path: str
    """The file they came from."""
    prompt_column: str
    """Source column of "prompt"."""
    answer_source: str
    """How "answer" was obtained, e.g. ``"answer"`` or ``"solution (last \\boxed{})"``."""
    skipped_rows: list[SkippedRow] = field(default_factory=list)
    """Rows left out with ``on_bad_row="skip"``, in file order."""

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index):
        return self.examples[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.examples)

    @property
    def skipped(self) -> int:
        """Number of rows left out."""
        return len(self.skipped_rows)

    def skip_reasons(self) -> dict[str, int]:
        """Counts of skipped rows by ``"field: reason"`` (most frequent first)."""
        counts = Counter(f"{row.field}: {row.reason}" if row.field else row.reason for row in self.skipped_rows)
        return dict(counts.most_common())

    @property
    def columns(self) -> list[str]:
        """Union of the keys of all examples, in first-seen order."""
        seen: dict[str, None] = {}
        for example in self.examples:
            seen.update(dict.fromkeys(example))
        return list(seen)

    def summary(self) -> str:
        """One line: counts, source columns and skip reasons."""
        text = f"{self.path}: {len(self)} examples (prompt <- {self.prompt_column!r}, answer <- {self.answer_source!r})"
        if self.skipped:
            reasons = "; ".join(f"{r} x{n}" for r, n in self.skip_reasons().items())
            text += f", {self.skipped} rows skipped ({reasons})"
        return text

    def to_dataset(self):
        """A ``datasets.Dataset`` of the examples (a key missing from a row becomes None)."""
        # heavy (datasets): Hub-format folders only
        import datasets

        columns = self.columns
        return datasets.Dataset.from_dict({name: [example.get(name) for example in self.examples] for name in columns})


class RowError(Exception):
    """A bad row: carries the field (or None) and the reason; the loader adds file and row."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


# ---------------------------------------------------------------------------- readers
# Each reader yields (where, row_or_error): ``where`` is the human row position,
# ``row_or_error`` a dict or a RowError for a row that could not even be parsed.


def read_jsonl_rows(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    """Rows of a JSON lines file: one object per line; blank lines skipped, a bad line is a RowError."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"line {lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, RowError(None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            if lineno == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                continue  # blank lines (e.g. a trailing newline) are not rows
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield where, RowError(None, f"malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(row, dict):
                yield where, RowError(None, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield where, row


def _json_records(data: Any, path: Path) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            return next(iter(lists.values()))  # {"data": [{...}, ...]}
        if data and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
            names = list(lists)  # columnar: {"question": [...], "answer": [...]}
            return [dict(zip(names, values)) for values in zip(*lists.values())]
    raise ValueError(
        f"{path}: expected a JSON array of objects, an object holding one such array, "
        f"or an object of equal-length column lists; got {type(data).__name__}"
    )


def read_json_rows(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    """Rows of a JSON file: an array of objects, an object holding one such array, or equal-length columns
    (JSON lines saved with a .json suffix are read as such)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON lines saved with a .json suffix
            yield from read_jsonl_rows(path)
            return
        raise ValueError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    for index, row in enumerate(_json_records(data, path), start=1):
        where = f"row {index}"
        if isinstance(row, dict):
            yield where, row
        else:
            yield where, RowError(None, f"expected a JSON object, got {type(row).__name__}")


_CSV_EXTRA = "\0extra"  # DictReader's key for fields beyond the header


def _read_csv(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, restkey=_CSV_EXTRA, restval=None)
        try:
            header = reader.fieldnames
        except csv.Error as exc:
            raise ValueError(f"{path}: unreadable CSV header ({exc})") from None
        if not header:
            raise ValueError(f"{path}: empty CSV file (no header row)")
        index = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                index += 1
                yield f"row {index} (line {reader.line_num})", RowError(None, f"malformed CSV ({exc})")
                continue
            index += 1
            where = f"row {index} (line {reader.line_num})"
            if _CSV_EXTRA in row:
                count = len(header) + len(row[_CSV_EXTRA])
                yield where, RowError(None, f"{count} fields but the header has {len(header)}")
            elif any(value is None for value in row.values()):
                count = sum(value is not None for value in row.values())
                yield where, RowError(None, f"{count} fields but the header has {len(header)}")
            else:
                yield where, row


def _read_parquet(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    # optional (pyarrow): Parquet files only
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            index += 1
            yield f"row {index}", row


_READERS = {".jsonl": read_jsonl_rows, ".json": read_json_rows, ".csv": _read_csv, ".parquet": _read_parquet}


# ---------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class _Mapping:
    prompt: str
    answer: str
    boxed: bool  # extract the last \boxed{} of the answer column
    keep: dict[str, str] | None  # output name -> source column; None keeps all others

    def describe_answer(self) -> str:
        return f"{self.answer} (last \\boxed{{}})" if self.boxed else self.answer


def _resolve_mapping(
    available: Sequence[str],
    prompt_column: str | None,
    answer_column: str | None,
    answer_from_solution: bool | str | None,
    columns: Sequence[str] | Mapping[str, str] | None,
) -> _Mapping:
    """Choose the source columns from the first row's (or header's) column names."""
    listing = ", ".join(available) if available else "(none)"

    def require(name: str, what: str) -> str:
        if name not in available:
            raise RowError(name, f"no column {name!r} ({what}); available columns: {listing}")
        return name

    if prompt_column is not None:
        prompt = require(prompt_column, "prompt_column")
    else:
        found = [c for c in PROMPT_CANDIDATES if c in available]
        if not found:
            raise RowError(
                "prompt",
                f"no prompt column found (looked for {', '.join(PROMPT_CANDIDATES)}); "
                f"available columns: {listing}; pass prompt_column=",
            )
        prompt = found[0]

    if isinstance(answer_from_solution, str):
        if answer_column is not None and answer_column != answer_from_solution:
            raise ValueError(
                f"answer_column={answer_column!r} and answer_from_solution="
                f"{answer_from_solution!r} name different columns; give one of them"
            )
        answer, boxed = require(answer_from_solution, "answer_from_solution"), True
    elif answer_from_solution is True:
        answer, boxed = require(answer_column or SOLUTION_COLUMN, "answer_from_solution"), True
    elif answer_column is not None:
        answer, boxed = require(answer_column, "answer_column"), False
    else:
        found = [c for c in ANSWER_CANDIDATES if c in available]
        if found:
            answer, boxed = found[0], False
        elif answer_from_solution is None and SOLUTION_COLUMN in available:
            answer, boxed = SOLUTION_COLUMN, True
        else:
            also = "" if answer_from_solution is False else f", or a {SOLUTION_COLUMN!r} column with \\boxed{{}}"
            raise RowError(
                "answer",
                f"no answer column found (looked for {', '.join(ANSWER_CANDIDATES)}{also}); "
                f"available columns: {listing}; pass answer_column=",
            )

    keep: dict[str, str] | None
    if columns is None:
        keep = None
    elif isinstance(columns, Mapping):
        keep = {str(k): str(v) for k, v in columns.items()}
    elif isinstance(columns, (str, bytes)):
        raise TypeError(f"columns must be a list of names or a mapping, got the string {columns!r}")
    else:
        keep = {str(c): str(c) for c in columns}
    if keep is not None:
        for out, source in keep.items():
            if out in ("prompt", "answer"):
                raise ValueError(f"columns: {out!r} is reserved; use prompt_column/answer_column to choose its source")
            require(source, f"columns[{out!r}]")
    return _Mapping(prompt=prompt, answer=answer, boxed=boxed, keep=keep)


def _convert_row(row: dict, mapping: _Mapping, answer_marker: str | None) -> dict[str, Any]:
    """One example from one raw row; raises RowError naming the bad field."""
    for name in (mapping.prompt, mapping.answer):
        if name not in row:
            available = ", ".join(row) or "(none)"
            raise RowError(name, f"missing in this row; available columns: {available}")

    prompt = row[mapping.prompt]
    if not isinstance(prompt, str):
        raise RowError(mapping.prompt, f"the prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise RowError(mapping.prompt, "empty prompt")

    raw_answer = row[mapping.answer]
    extra: dict[str, Any] = {}
    if mapping.boxed:
        if not isinstance(raw_answer, str):
            raise RowError(mapping.answer, f"expected a solution string, got {type(raw_answer).__name__}")
        boxed = last_boxed(raw_answer)
        if boxed is None:
            raise RowError(mapping.answer, "no \\boxed{...} answer found in the solution")
        answer = boxed
    else:
        try:
            answer = normalize_answer(raw_answer)
        except AnswerError as exc:
            raise RowError(mapping.answer, str(exc)) from None
        if answer_marker and isinstance(raw_answer, str) and answer_marker in raw_answer:
            marked = answer_after_marker(raw_answer, answer_marker)
            if marked is None:
                raise RowError(mapping.answer, f"nothing after the {answer_marker!r} marker")
            answer = marked
            if SOLUTION_COLUMN not in row:
                extra[SOLUTION_COLUMN] = raw_answer

    example: dict[str, Any] = {"prompt": prompt, "answer": answer}
    if mapping.keep is None:
        for name, value in row.items():
            if name not in (mapping.prompt, "prompt", "answer"):
                example[name] = value
    else:
        for out, source in mapping.keep.items():
            if source not in row:
                raise RowError(source, f"missing in this row; available columns: {', '.join(row)}")
            example[out] = row[source]
    if mapping.keep is None or SOLUTION_COLUMN in mapping.keep:
        example.update(extra)
    return example


def no_usable_examples(path: object, skipped: list[SkippedRow]) -> ValueError:
    """The error for a file that yielded no example, with the commonest skip reasons."""
    detail = ""
    if skipped:
        reasons = Counter(f"{s.field}: {s.reason}" if s.field else s.reason for s in skipped)
        detail = f"; {len(skipped)} rows skipped: " + "; ".join(f"{r} x{n}" for r, n in reasons.most_common(5))
    return ValueError(f"{path}: no usable examples{detail}")


def load_examples(
    path: str | os.PathLike,
    *,
    prompt_column: str | None = None,
    answer_column: str | None = None,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    answer_from_solution: bool | str | None = None,
    answer_marker: str | None = "####",
    on_bad_row: str = "error",
    limit: int | None = None,
) -> ExampleSet:
    """Read a .jsonl / .json / .parquet / .csv file into prompt/answer examples.

    Args:
        path: the file (its suffix picks the reader), a shipped dataset
            (``shipped:NAME`` or a bare ``NAME``) or a Hugging Face dataset
            (``hf:OWNER/NAME[@CONFIG]:SPLIT``); see :mod:`apmpo.data.sources`.
        prompt_column: source column of "prompt" (default: detected, see module doc).
        answer_column: source column of "answer" (default: detected).
        columns: which other columns to keep: None keeps all of them; a list keeps only
            those; a mapping ``{output_name: source_column}`` keeps and renames.
        answer_from_solution: None: take the last ``\\boxed{}`` of the "solution"
            column only when no answer column exists; True: always do so (from
            ``answer_column`` if given, else "solution"); a column name: from that
            column; False: never.
        answer_marker: a string answer containing a line starting with this marker
            (GSM8K's "####") becomes the text after it; None disables.
        on_bad_row: "error" raises ValueError at the first bad row; "skip" leaves it
            out and records it in ``ExampleSet.skipped_rows``.
        limit: stop after this many accepted examples.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix, an unknown shipped name, a malformed or
            unloadable ``hf:`` reference (:class:`apmpo.data.hub.HubUnavailableError`
            when the Hub cannot be reached), column mapping not matching the file, a bad row
            (``on_bad_row="error"``), or no usable row at all. Messages name the file,
            the row and the field.
    """
    if on_bad_row not in _BAD_ROW_MODES:
        raise ValueError(f"on_bad_row must be one of {_BAD_ROW_MODES}, got {on_bad_row!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    path, header, rows = _open(path)

    examples: list[dict[str, Any]] = []
    skipped: list[SkippedRow] = []
    mapping: _Mapping | None = None

    def fail(where: str, error: RowError, skippable: bool = True) -> None:
        field_part = f", field {error.field!r}" if error.field else ""
        hint = " (on_bad_row='skip' skips and counts such rows)" if skippable else ""
        raise ValueError(f"{path}: {where}{field_part}: {error.reason}{hint}")

    if header is not None:
        try:
            mapping = _resolve_mapping(header, prompt_column, answer_column, answer_from_solution, columns)
        except RowError as exc:
            fail("columns" if path.startswith(HUB_PREFIX) else "header", exc, skippable=False)

    for where, row in rows:
        try:
            if isinstance(row, RowError):
                raise row
            if mapping is None:
                try:
                    mapping = _resolve_mapping(list(row), prompt_column, answer_column, answer_from_solution, columns)
                except RowError as exc:
                    fail(where, exc, skippable=False)  # a mapping that does not fit is never skipped
            assert mapping is not None  # resolved from the first row above
            examples.append(_convert_row(row, mapping, answer_marker))
        except RowError as exc:
            if on_bad_row == "error":
                fail(where, exc)
            skipped.append(SkippedRow(where=where, field=exc.field, reason=exc.reason))
            continue
        if limit is not None and len(examples) >= limit:
            break

    if not examples:
        raise no_usable_examples(path, skipped)
    assert mapping is not None
    return ExampleSet(
        examples=examples,
        path=str(path),
        prompt_column=mapping.prompt,
        answer_source=mapping.describe_answer(),
        skipped_rows=skipped,
    )


def _open(reference: str | os.PathLike) -> tuple[str, list[str] | None, Iterator[tuple[str, dict | RowError]]]:
    """(how errors name the source, its column names if known up front, its rows) for a data reference.

    A file is read by its suffix's reader; a Hugging Face dataset (``hf:...``, see
    :mod:`apmpo.data.hub`) through ``datasets``, its rows numbered from 1.
    """
    source = resolve_data_reference(reference)
    if isinstance(source, HubDataset):
        dataset = source.load()
        rows = ((f"row {index}", row) for index, row in enumerate(dataset, start=1))
        return source.text, list(dataset.column_names), rows
    suffix = source.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(
            f"{source}: unsupported file type {suffix or '(no suffix)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not source.is_file():
        raise FileNotFoundError(data_reference_problem(reference) or f"{source}: no such file")
    header = _header(source, suffix) if suffix in (".csv", ".parquet") else None
    return str(source), header, _READERS[suffix](source)


def _header(path: Path, suffix: str) -> list[str]:
    if suffix == ".parquet":
        # optional (pyarrow): Parquet files only
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            return next(csv.reader(handle), [])
        except csv.Error as exc:
            raise ValueError(f"{path}: unreadable CSV header ({exc})") from None

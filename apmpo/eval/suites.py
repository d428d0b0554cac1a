"""Benchmarks to evaluate: ``--data path[:name]`` specs and suite YAML files.

A :class:`BenchmarkSpec` says where one benchmark is and how to read it (column
mapping for :func:`apmpo.data.load_examples`, prompt template, reward). A suite file
(e.g. the packaged ``eval_math_suite.yaml``) lists several, with shared defaults::

    name: math
    prompt:                      # apmpo.data.PromptFormat fields
      template: "{prompt}\\n\\nPut your final answer within \\\\boxed{{}}."
      system_prompt: null
      use_chat_template: auto
    reward: math_accuracy        # a name from apmpo.rewards
    generation:                  # defaults for the eval settings (the CLI overrides them)
      n: 4
      k: [1, 4]
    benchmarks:
      - name: math500
        shipped: math500                           # the copy shipped with apmpo (apmpo.data.shipped)
        hub: hf:HuggingFaceH4/MATH-500@default:test  # the Hugging Face dataset (apmpo.data.hub)
        path: math500/test.jsonl   # your copy: relative paths resolve against --data-root
        prompt_column: problem     # the columns of the shipped / local layout
        answer_column: answer
      - name: minerva
        path: minerva_math/test.jsonl
        answer_from_solution: solution   # the last \\boxed{} of this column

Where each benchmark is read from is the suite's **data source** (``--data-source``):

- ``shipped`` (the default without a data root): the entry's ``shipped:`` copy. An
  entry whose dataset is deliberately not shipped (:data:`apmpo.data.shipped.NOT_SHIPPED`,
  e.g. Minerva) is left out and listed in :attr:`Suite.unavailable` with the reason;
  an entry without ``shipped:`` is read from its ``path`` (a relative one needs a data
  root).
- ``local`` (the default with ``--data-root`` or the suite's ``data_root:``): every
  entry's ``path``, relative ones under the data root: your own copies.
- ``hub``: every entry's ``hub:`` dataset, a string (columns detected) or a mapping
  ``{id: hf:..., prompt_column:, answer_column:, answer_from_solution:}``
  (:class:`HubEntry`); the entry's own column keys describe the shipped / local layout
  and are not used.

A ``path`` may itself be any data reference (``shipped:NAME``, ``hf:...``). Every key
is checked (:mod:`apmpo.settings`): an unknown key is an error naming the key, the
file and the known keys. After :func:`load_suite`, each :class:`BenchmarkSpec` has its
``path`` set to the data it will be read from and ``source`` to the source used.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from apmpo.data.hub import HUB_PREFIX, HubDataset, HubUnavailableError
from apmpo.data.loaders import ExampleSet, load_examples
from apmpo.data.shipped import SHIPPED_PREFIX, not_shipped_reason, shipped_path
from apmpo.data.sources import is_data_reference
from apmpo.eval.settings import EvalSettings
from apmpo.settings import Settings, build_settings, read_yaml

__all__ = [
    "DATA_SOURCES",
    "PACKAGED_SUITES",
    "BenchmarkEntry",
    "BenchmarkSpec",
    "DataSource",
    "HubEntry",
    "PromptSettings",
    "Suite",
    "SuiteFile",
    "load_suite",
    "parse_data_spec",
    "resolve_suite_path",
]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PACKAGED_SUITES: dict[str, str] = {"math": "eval_math_suite.yaml"}
"""Short names accepted by ``--suite`` for packaged suite files."""
DataSource = Literal["shipped", "local", "hub"]
"""Where a suite's benchmarks are read from (see the module doc)."""
DATA_SOURCES: tuple[str, ...] = ("shipped", "local", "hub")
"""The values of :data:`DataSource`, in the order ``--data-source`` lists them."""
_GENERIC_STEMS = {"test", "train", "dev", "val", "valid", "validation", "data", "eval", "all"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class HubEntry(Settings):
    """A suite entry's Hugging Face dataset with its own column mapping (the Hub layout may differ)."""

    id: str
    """The dataset: ``hf:OWNER/NAME[@CONFIG]:SPLIT``."""
    prompt_column: str | None = None
    """Column of the problem text in the Hub dataset (default: detected)."""
    answer_column: str | None = None
    """Column of the reference answer in the Hub dataset (default: detected)."""
    answer_from_solution: bool | str | None = None
    """Take the reference answer from the last ``\\boxed{}`` of this column of the Hub dataset."""


class BenchmarkEntry(Settings):
    """One benchmark as a suite file writes it: where its data is and how to read and score it."""

    name: str
    """Name used in records and the summary (letters, digits, ``_ . + -``)."""
    path: str | None = None
    """The data: a file (.jsonl, .json, .parquet, .csv; in a suite, relative to the data root), ``shipped:NAME`` or ``hf:...``."""
    shipped: str | None = None
    """Suite entries: the short name of the copy shipped with apmpo (``math500``), read with ``--data-source shipped``."""
    hub: str | HubEntry | None = None
    """Suite entries: the Hugging Face dataset (``hf:OWNER/NAME[@CONFIG]:SPLIT``, or a mapping with ``id`` and column keys), read with ``--data-source hub``."""
    prompt_column: str | None = None
    """Source column of the problem text (default: detected by apmpo.data)."""
    answer_column: str | None = None
    """Source column of the reference answer (default: detected)."""
    answer_from_solution: bool | str | None = None
    """Take the reference answer from the last ``\\boxed{}`` of this column (True: "solution")."""
    template: str | None = None
    """Prompt template for this benchmark (default: the suite's or the harness's)."""
    system_prompt: str | None = None
    """System prompt for this benchmark (default: the suite's)."""
    reward: str | None = None
    """Reward name from apmpo.rewards (default: the suite's, else math_accuracy)."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"benchmark name {name!r} must start with a letter or digit and hold only letters, digits and _ . + -"
            )
        return name

    @model_validator(mode="after")
    def _has_data(self) -> BenchmarkEntry:
        if not (self.path or self.shipped or self.hub):
            raise ValueError("give at least one of 'path' (your copy), 'shipped' or 'hub'")
        return self


class BenchmarkSpec(BenchmarkEntry):
    """One benchmark to evaluate: a suite entry with the data chosen (``path``), or a ``--data`` spec."""

    source: str | None = None
    """Set by load_suite: the data source ``path`` was chosen from (shipped, local, hub; "data" for --data)."""
    where: str | None = None
    """Set by load_suite: the entry's place in the suite file, for error messages."""

    def loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`apmpo.data.load_examples`."""
        return {
            "prompt_column": self.prompt_column,
            "answer_column": self.answer_column,
            "answer_from_solution": self.answer_from_solution,
        }

    def load_examples(self, *, limit: int | None = None) -> ExampleSet:
        """Read ``path`` with the column mapping; errors name the suite entry (``where``) when there is one.

        When a Hub dataset cannot be reached, the error names the entry's shipped copy
        (``--data-source shipped``) if it has one.
        """
        prefix = f"{self.where}: " if self.where else ""
        if not self.path:
            raise ValueError(f"{prefix}benchmark {self.name!r} has no data to read (no 'path')")
        try:
            return load_examples(self.path, limit=limit, **self.loader_kwargs())
        except HubUnavailableError as exc:
            fallback = ""
            if self.shipped and not not_shipped_reason(self.shipped):
                fallback = (
                    f"; benchmark {self.name!r} is shipped with apmpo: use --data-source shipped "
                    f"(reads {SHIPPED_PREFIX}{self.shipped}, no network)"
                )
            raise HubUnavailableError(f"{prefix}{exc}{fallback}") from None
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{prefix}{exc}") from None
        except ValueError as exc:
            raise ValueError(f"{prefix}{exc}") from None


@dataclass
class Suite:
    """Benchmarks evaluated together, with shared prompt, reward and generation defaults."""

    name: str
    """Suite name (shown in the summary)."""
    benchmarks: list[BenchmarkSpec]
    """The benchmarks, in order."""
    template: str = "{prompt}"
    """Default prompt template."""
    system_prompt: str | None = None
    """Default system prompt."""
    use_chat_template: bool | str = "auto"
    """Apply the tokenizer's chat template: "auto", True or False."""
    reward: str = "math_accuracy"
    """Default reward name."""
    generation: dict[str, Any] = field(default_factory=dict)
    """Defaults for the evaluation settings (field names of EvalSettings)."""
    source: str | None = None
    """The file the suite was read from."""
    data_source: str | None = None
    """Where the benchmarks are read from: one of DATA_SOURCES."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Benchmarks of the suite left out (name -> why and how to add them), e.g. not shipped."""
    entries: list[BenchmarkSpec] = field(default_factory=list)
    """Every entry of the suite file (after ``only``), in order, as written (paths unresolved)."""

    def use_data(self, spec: BenchmarkSpec) -> None:
        """Read the suite's benchmark ``spec.name`` from ``spec.path`` (``--data FILE:NAME`` with a suite name).

        The benchmark keeps the entry's prompt and reward and takes ``spec``'s columns
        (None: detected); an unavailable benchmark becomes available. A name that is
        not in the suite raises KeyError.
        """
        entry = next((e for e in self.entries if e.name == spec.name), None)
        if entry is None:
            raise KeyError(spec.name)
        replaced = entry.model_copy(
            update={
                "path": spec.path,
                "source": "data",
                "prompt_column": spec.prompt_column,
                "answer_column": spec.answer_column,
                "answer_from_solution": spec.answer_from_solution,
            }
        )
        self.unavailable.pop(spec.name, None)
        chosen = {b.name: b for b in self.benchmarks}
        chosen[spec.name] = replaced
        self.benchmarks = [chosen[e.name] for e in self.entries if e.name in chosen]


def default_name(path: str) -> str:
    """A benchmark name from a file path: its stem, or its folder for generic stems (test.jsonl)."""
    p = Path(path)
    stem = p.stem
    if stem.lower() in _GENERIC_STEMS and p.parent.name:
        stem = p.parent.name
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", stem).lstrip("_.+-")
    return name or "data"


def parse_data_spec(spec: str) -> BenchmarkSpec:
    """``"path"`` or ``"path:name"`` -> :class:`BenchmarkSpec` (column mapping detected).

    The part after the last colon is a name when it is a plain name (no ``/`` or
    ``\\``) and the part before it is not empty; otherwise the whole string is the path
    (so ``C:\\data\\x.jsonl`` stays a path). The default name is the file stem, or the
    folder name for generic stems such as ``test``. ``shipped:NAME`` and
    ``hf:OWNER/NAME[@CONFIG]:SPLIT`` may be followed by ``:BENCHMARK_NAME`` too.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--data: empty data spec {spec!r}")
    if spec.startswith(HUB_PREFIX):
        return _parse_hub_data_spec(spec)
    path, sep, name = spec.rpartition(":")
    if spec.startswith(SHIPPED_PREFIX) and path == "shipped":  # shipped:NAME without a benchmark name
        return BenchmarkSpec(name=default_name(name), path=spec)
    if sep and path and name and "/" not in name and "\\" not in name:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"--data {spec!r}: benchmark name {name!r} must start with a letter or digit and hold "
                "only letters, digits and _ . + -"
            )
        return BenchmarkSpec(name=name, path=path)
    return BenchmarkSpec(name=default_name(spec), path=spec)


def _parse_hub_data_spec(spec: str) -> BenchmarkSpec:
    """``hf:REPO[@CONFIG]:SPLIT[:NAME]`` -> BenchmarkSpec (the name defaults to the repo's name)."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    reference = spec if len(parts) <= 2 else HUB_PREFIX + ":".join(parts[:2])
    if len(parts) > 3:
        raise ValueError(f"--data {spec!r}: write hf:OWNER/NAME[@CONFIG]:SPLIT, optionally followed by :BENCHMARK_NAME")
    dataset = HubDataset.parse(reference)
    name = parts[2] if len(parts) == 3 else default_name(dataset.repo)
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"--data {spec!r}: benchmark name {name!r} must start with a letter or digit and hold only letters, "
            "digits and _ . + -"
        )
    return BenchmarkSpec(name=name, path=reference)


def resolve_suite_path(suite: str | os.PathLike) -> Path:
    """A suite file path, or a packaged suite by short name ("math") or file name."""
    text = os.fspath(suite)
    if text in PACKAGED_SUITES:
        return _CONFIG_DIR / PACKAGED_SUITES[text]
    path = Path(text).expanduser()
    if path.is_file():
        return path
    packaged = _CONFIG_DIR / Path(text).name
    if not path.parent.name and packaged.is_file() and packaged.name.endswith((".yaml", ".yml")):
        return packaged
    known = ", ".join(f"{k} ({v})" for k, v in PACKAGED_SUITES.items())
    raise FileNotFoundError(f"suite {text!r}: no such file; packaged suites: {known}")


class PromptSettings(Settings):
    """The suite's prompt: apmpo.data.PromptFormat's fields."""

    template: str = "{prompt}"
    """Default prompt template."""
    system_prompt: str | None = None
    """Default system prompt."""
    use_chat_template: Literal[True, False, "auto"] = "auto"
    """Apply the tokenizer's chat template: "auto", True or False."""


class SuiteFile(Settings):
    """A suite YAML file as written (where each benchmark is read from not yet chosen)."""

    name: str | None = None
    """Suite name (default: the file's stem)."""
    data_root: str | None = None
    """Folder relative benchmark paths resolve against (``--data-root`` wins); implies ``--data-source local``."""
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    """Shared prompt settings."""
    reward: str = "math_accuracy"
    """Default reward name."""
    generation: dict[str, Any] = {}
    """Defaults for the evaluation settings (their names: n, k, temperature, ...; the flags win)."""
    benchmarks: list[BenchmarkEntry] = Field(min_length=1)
    """The benchmarks, in order."""

    @field_validator("generation")
    @classmethod
    def _setting_names(cls, generation: dict[str, Any]) -> dict[str, Any]:
        known = list(EvalSettings.model_fields)
        unknown = [str(k) for k in generation if k not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown key(s) {', '.join(unknown)}{hint}; known keys: {', '.join(known)}")
        return generation


def load_suite(
    suite: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    data_source: str | None = None,
) -> Suite:
    """Read a suite file (or packaged suite name) and choose where each benchmark is read from.

    Args:
        suite: a YAML path, or a packaged suite name (see PACKAGED_SUITES).
        data_root: folder that relative benchmark paths resolve against; overrides the
            suite's ``data_root:``.
        only: keep only these benchmark names (an unknown name is an error listing the
            suite's names; a requested benchmark that is unavailable is an error too).
        data_source: one of DATA_SOURCES (see the module doc); None: "local" when a
            data root is given (here or in the suite), else "shipped".
    """
    path = resolve_suite_path(suite)
    where = str(path)
    raw = build_settings(SuiteFile, read_yaml(path, what="suite"), source=where)
    root = data_root if data_root is not None else raw.data_root
    root_path = Path(root).expanduser() if root is not None else None
    if data_source is None:
        data_source = "local" if root_path is not None else "shipped"
    if data_source not in DATA_SOURCES:
        raise ValueError(f"data source {data_source!r}: choose one of {', '.join(DATA_SOURCES)}")
    if data_root is not None and data_source != "local":
        raise ValueError(f"--data-root applies to --data-source local (your own copies), not to {data_source!r}")

    entries = [
        BenchmarkSpec(**entry.model_dump(), where=f"{where}: benchmarks[{index}] ({entry.name})")
        for index, entry in enumerate(raw.benchmarks)
    ]
    names = [b.name for b in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: duplicate benchmark name(s) {', '.join(duplicates)}")
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"{where}: no benchmark named {', '.join(unknown)}; the suite has {', '.join(names)}")
        entries = [b for b in entries if b.name in set(only)]

    benchmarks: list[BenchmarkSpec] = []
    unavailable: dict[str, str] = {}
    for spec in entries:
        chosen = _choose_data(spec, data_source, root_path)
        if isinstance(chosen, str):
            if only:
                raise ValueError(f"{spec.where}: {chosen}")
            unavailable[spec.name] = chosen
        else:
            benchmarks.append(chosen)
    if not benchmarks:
        raise ValueError(
            f"{where}: no benchmark can be read from the {data_source} data: "
            + "; ".join(f"{n}: {r}" for n, r in unavailable.items())
        )

    return Suite(
        name=raw.name or path.stem,
        benchmarks=benchmarks,
        template=raw.prompt.template,
        system_prompt=raw.prompt.system_prompt,
        use_chat_template=raw.prompt.use_chat_template,
        reward=raw.reward,
        generation=raw.generation,
        source=where,
        data_source=data_source,
        unavailable=unavailable,
        entries=entries,
    )


def _choose_data(spec: BenchmarkSpec, data_source: str, root: Path | None) -> BenchmarkSpec | str:
    """``spec`` with ``path`` and ``source`` set for ``data_source``, or why it cannot be read from there."""
    if data_source == "hub":
        return _hub_data(spec)
    if data_source == "shipped" and spec.shipped:
        if not_shipped_reason(spec.shipped):
            ways = [f"--data FILE:{spec.name}"]
            ways += ["--data-source local --data-root DIR"] if spec.path else []
            ways += ["--data-source hub"] if spec.hub else []
            return f"{not_shipped_reason(spec.shipped)}; add it with {' or '.join(ways)}"
        try:
            shipped_path(spec.shipped)
        except ValueError as exc:
            raise ValueError(f"{spec.where}: shipped: {exc}") from None
        return spec.model_copy(update={"path": f"{SHIPPED_PREFIX}{spec.shipped}", "source": "shipped"})
    if not spec.path:
        raise ValueError(
            f"{spec.where}: no 'path' for --data-source {data_source}; use "
            + ("--data-source hub" if spec.hub else "another data source")
        )
    file = str(spec.path)
    if not is_data_reference(file) and not Path(file).expanduser().is_absolute():
        if root is None:
            raise ValueError(
                f"{spec.where}: relative path {file!r} needs a data root: pass --data-root DIR (the folder "
                "holding your copies of the benchmark files) or set data_root: in the suite"
            )
        file = str(root / Path(file).expanduser())
    elif not is_data_reference(file):
        file = str(Path(file).expanduser())
    return spec.model_copy(update={"path": file, "source": "local"})


def _hub_data(spec: BenchmarkSpec) -> BenchmarkSpec:
    """``spec`` reading its ``hub:`` dataset with the Hub layout's columns."""
    if not spec.hub:
        raise ValueError(f"{spec.where}: no 'hub' dataset for --data-source hub; use --data-source shipped or local")
    hub = spec.hub if isinstance(spec.hub, HubEntry) else HubEntry(id=spec.hub)
    try:
        HubDataset.parse(hub.id)
    except ValueError as exc:
        raise ValueError(f"{spec.where}: hub: {exc}") from None
    return spec.model_copy(
        update={
            "path": hub.id,
            "source": "hub",
            "prompt_column": hub.prompt_column,
            "answer_column": hub.answer_column,
            "answer_from_solution": hub.answer_from_solution,
        }
    )

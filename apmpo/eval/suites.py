"""Benchmarks to evaluate: ``--data path[:name]`` specs and suite YAML files.

A :class:`BenchmarkSpec` says where one benchmark file is and how to read it (column
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
        path: math500/test.jsonl   # relative paths resolve against --data-root
        prompt_column: problem
        answer_column: answer
      - name: minerva
        path: minerva_math/test.jsonl
        answer_from_solution: solution   # the last \\boxed{} of this column

Every key is checked: an unknown key is an error naming the key, where it is and the
known keys. Paths are never assumed: relative ones need a data root (``--data-root``
or the suite's ``data_root:``), so the package works with the user's own copies of the
benchmark files wherever they are.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "GENERATION_KEYS",
    "PACKAGED_SUITES",
    "BenchmarkSpec",
    "Suite",
    "load_suite",
    "parse_data_spec",
    "resolve_suite_path",
]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PACKAGED_SUITES: dict[str, str] = {"math": "eval_math_suite.yaml"}
"""Short names accepted by ``--suite`` for packaged suite files."""
GENERATION_KEYS = ("n", "k", "maj_k", "temperature", "top_p", "top_k", "max_new_tokens", "batch_size", "seed")
"""Keys a suite's ``generation:`` section may set (the eval settings of the same names)."""
_GENERIC_STEMS = {"test", "train", "dev", "val", "valid", "validation", "data", "eval", "all"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass
class BenchmarkSpec:
    """One benchmark file and how to read and score it."""

    name: str
    """Name used in records and the summary (letters, digits, ``_ . + -``)."""
    path: str
    """The data file (.jsonl, .json, .parquet, .csv)."""
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

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"benchmark name {self.name!r} must start with a letter or digit and hold only "
                "letters, digits and _ . + -"
            )

    def loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`apmpo.data.load_examples`."""
        return {
            "prompt_column": self.prompt_column,
            "answer_column": self.answer_column,
            "answer_from_solution": self.answer_from_solution,
        }


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
    """Defaults for the eval settings (keys of GENERATION_KEYS)."""
    source: str | None = None
    """The file the suite was read from."""


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
    folder name for generic stems such as ``test``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--data: empty data spec {spec!r}")
    path, sep, name = spec.rpartition(":")
    if sep and path and name and "/" not in name and "\\" not in name:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"--data {spec!r}: benchmark name {name!r} must start with a letter or digit and hold "
                "only letters, digits and _ . + -"
            )
        return BenchmarkSpec(name=name, path=path)
    return BenchmarkSpec(name=default_name(spec), path=spec)


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


_SUITE_KEYS = ("name", "data_root", "prompt", "reward", "generation", "benchmarks")
_PROMPT_KEYS = ("template", "system_prompt", "use_chat_template")
_BENCHMARK_KEYS = tuple(f.name for f in dataclasses.fields(BenchmarkSpec))


def _check_keys(mapping: Any, known: Sequence[str], where: str) -> dict:
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    unknown = [str(k) for k in mapping if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    return dict(mapping)


def load_suite(
    suite: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
) -> Suite:
    """Read a suite file (or packaged suite name) and resolve its benchmark paths.

    Args:
        suite: a YAML path, or a packaged suite name (see PACKAGED_SUITES).
        data_root: folder that relative benchmark paths resolve against; overrides the
            suite's ``data_root:``. A relative path with neither is an error.
        only: keep only these benchmark names (an unknown name is an error listing the
            suite's names).
    """
    path = resolve_suite_path(suite)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: malformed YAML ({exc})") from None
    where = str(path)
    raw = _check_keys(raw, _SUITE_KEYS, where)
    prompt = _check_keys(raw.get("prompt") or {}, _PROMPT_KEYS, f"{where}: prompt")
    generation = _check_keys(raw.get("generation") or {}, GENERATION_KEYS, f"{where}: generation")
    items = raw.get("benchmarks")
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where}: 'benchmarks' must be a non-empty list of benchmark entries")

    root = data_root if data_root is not None else raw.get("data_root")
    root_path = Path(root).expanduser() if root is not None else None
    benchmarks: list[BenchmarkSpec] = []
    for index, item in enumerate(items, start=1):
        entry_where = f"{where}: benchmarks[{index}]"
        entry = _check_keys(item, _BENCHMARK_KEYS, entry_where)
        for required in ("name", "path"):
            if not entry.get(required):
                raise ValueError(f"{entry_where}: missing {required!r}")
        try:
            spec = BenchmarkSpec(**entry)
        except ValueError as exc:
            raise ValueError(f"{entry_where}: {exc}") from None
        file = Path(str(spec.path)).expanduser()
        if not file.is_absolute():
            if root_path is None:
                raise ValueError(
                    f"{entry_where} ({spec.name}): relative path {spec.path!r} needs a data root: "
                    "pass --data-root DIR (the folder holding your copies of the benchmark files) "
                    "or set data_root: in the suite"
                )
            file = root_path / file
        spec.path = str(file)
        benchmarks.append(spec)

    names = [b.name for b in benchmarks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: duplicate benchmark name(s) {', '.join(duplicates)}")
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"{where}: no benchmark named {', '.join(unknown)}; the suite has {', '.join(names)}")
        benchmarks = [b for b in benchmarks if b.name in set(only)]

    return Suite(
        name=str(raw.get("name") or path.stem),
        benchmarks=benchmarks,
        template=prompt.get("template", "{prompt}"),
        system_prompt=prompt.get("system_prompt"),
        use_chat_template=prompt.get("use_chat_template", "auto"),
        reward=str(raw.get("reward") or "math_accuracy"),
        generation=generation,
        source=str(path),
    )

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

Every key is checked (:mod:`apmpo.settings`): an unknown key is an error naming the key,
the file and the known keys. Paths are never assumed: relative ones need a data root (``--data-root``
or the suite's ``data_root:``), so the package works with the user's own copies of the
benchmark files wherever they are.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from apmpo.eval.settings import EvalSettings
from apmpo.settings import Settings, build_settings, read_yaml

__all__ = [
    "PromptSettings",
    "SuiteFile",
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
_GENERIC_STEMS = {"test", "train", "dev", "val", "valid", "validation", "data", "eval", "all"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class BenchmarkSpec(Settings):
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

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"benchmark name {name!r} must start with a letter or digit and hold only letters, digits and _ . + -"
            )
        return name

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
    """Defaults for the evaluation settings (field names of EvalSettings)."""
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


class PromptSettings(Settings):
    """The suite's prompt: apmpo.data.PromptFormat's fields."""

    template: str = "{prompt}"
    """Default prompt template."""
    system_prompt: str | None = None
    """Default system prompt."""
    use_chat_template: Literal[True, False, "auto"] = "auto"
    """Apply the tokenizer's chat template: "auto", True or False."""


class SuiteFile(Settings):
    """A suite YAML file as written (relative benchmark paths not yet resolved)."""

    name: str | None = None
    """Suite name (default: the file's stem)."""
    data_root: str | None = None
    """Folder relative benchmark paths resolve against (``--data-root`` wins)."""
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    """Shared prompt settings."""
    reward: str = "math_accuracy"
    """Default reward name."""
    generation: dict[str, Any] = {}
    """Defaults for the evaluation settings (their names: n, k, temperature, ...; the flags win)."""
    benchmarks: list[BenchmarkSpec] = Field(min_length=1)
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
    where = str(path)
    raw = build_settings(SuiteFile, read_yaml(path, what="suite"), source=where)
    root = data_root if data_root is not None else raw.data_root
    root_path = Path(root).expanduser() if root is not None else None
    benchmarks: list[BenchmarkSpec] = []
    for index, spec in enumerate(raw.benchmarks):
        entry_where = f"{where}: benchmarks[{index}]"
        file = Path(str(spec.path)).expanduser()
        if not file.is_absolute():
            if root_path is None:
                raise ValueError(
                    f"{entry_where} ({spec.name}): relative path {spec.path!r} needs a data root: "
                    "pass --data-root DIR (the folder holding your copies of the benchmark files) "
                    "or set data_root: in the suite"
                )
            file = root_path / file
        benchmarks.append(spec.model_copy(update={"path": str(file)}))

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
        name=raw.name or path.stem,
        benchmarks=benchmarks,
        template=raw.prompt.template,
        system_prompt=raw.prompt.system_prompt,
        use_chat_template=raw.prompt.use_chat_template,
        reward=raw.reward,
        generation=raw.generation,
        source=where,
    )

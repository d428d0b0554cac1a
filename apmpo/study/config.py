"""The settings of a study: arms x paired seeds over a base training config, an optional warm-up, the report.

See :mod:`apmpo.study.runner` for what a study does; the fields are documented on
:class:`StudyConfig`, :class:`ArmSpec`, :class:`ReportSpec`, :class:`PowerSpec` and
:class:`WarmupConfig`.
A study file is read and checked by the same toolkit as every other configuration
(:mod:`apmpo.settings`): unknown keys, types and ranges are refused all at once, naming
the file and the key. The training settings of the runs are checked when the runs are
planned (:func:`apmpo.study.runs.plan_runs`), arm by arm.

A study file may start from another: ``extends: study_tiny.yaml`` (a path relative to the
file, or a packaged config) takes that study and applies this file over it: the
``train``, ``warmup``, ``report`` and ``power`` sections are merged into the base's
(nested mappings key by key, the training settings that are mappings of their own, such
as ``params``, replaced whole), ``arms`` by arm name (an arm set to null is removed), and
every other key replaces the base's.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from apmpo.settings import ConfigError, Settings, build_settings, deep_merge, read_yaml
from apmpo.trainer.commands import resolve_config_path

__all__ = [
    "ARM_GROUPS",
    "ArmSpec",
    "PowerSpec",
    "ReportSpec",
    "StudyConfig",
    "StudyError",
    "WarmupConfig",
    "load_study_config",
    "restrict",
    "study_config_from_dict",
]

ARM_GROUPS = ("main", "ablation")

MAPPING_SETTINGS = ("params", "task", "functions", "kwargs")
"""Training settings that are mappings of their own (the objective's hyperparameters, the task's options, the
reward functions and their arguments): a study's train section replaces them whole instead of merging into them."""

MERGED_SECTIONS = ("train", "warmup", "report", "power")
"""Sections an extending study config merges into its base's (key by key, nested); other keys replace."""


class StudyError(ConfigError):
    """A problem with a study config, its output directory or one of its runs (the message names it)."""


def _distinct(seeds: list[int]) -> list[int]:
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated seeds in {seeds!r}")
    return seeds


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


def _overrides(items: list[str]) -> list[str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"{bad[0]!r} is not section.field=value (e.g. algorithm.name=grpo)")
    return items


Seeds = Annotated[
    list[Annotated[int, Field(ge=0, le=2**63 - 1)]],
    BeforeValidator(_one_or_many),
    Field(min_length=1),
    AfterValidator(_distinct),
]
"""A non-empty list of distinct seeds (a single integer is accepted)."""
Overrides = Annotated[list[str], AfterValidator(_overrides)]
"""section.field=value overrides of the training config."""


class WarmupConfig(Settings):
    """Settings of the supervised warm-up (the ``warmup:`` section of a study config)."""

    model: str = "tiny"
    """Model to start from: "tiny" / "tiny:key=value,..." (random Llama, char tokenizer) or any reference apmpo.models.load_model_and_tokenizer accepts."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Seeds the model initialisation, the validation split and the batch order."""
    max_steps: Annotated[int, Field(ge=1)] = 3000
    """At most this many optimizer steps."""
    batch_size: Annotated[int, Field(ge=1)] = 64
    """Examples per step."""
    lr: float = Field(3e-3, gt=0)
    """AdamW learning rate (constant)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW decoupled weight decay."""
    max_grad_norm: float = Field(1.0, ge=0)
    """Gradient-norm clipping (0: none)."""
    eval_every: Annotated[int, Field(ge=1)] = 50
    """Validate every N steps."""
    target_accuracy: float = Field(0.3, gt=0, le=1)
    """Stop at the first validation at or above this greedy accuracy."""
    accuracy_range: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] | None = (0.2, 0.6)
    """[lo, hi]: the warmed-up model's held-out accuracy must land here, else the warm-up fails with advice (null: no check)."""
    train_size: Annotated[int, Field(ge=1)] = 20000
    """Examples drawn from the training split for the warm-up (data.train_size is ignored here)."""
    validation_size: Annotated[int, Field(ge=1)] = 200
    """Distinct training prompts held out for the stopping rule."""
    num_threads: Annotated[int, Field(ge=0)] = 1
    """torch threads during the warm-up (0: torch's default)."""

    @model_validator(mode="after")
    def _consistent(self) -> WarmupConfig:
        problems = []
        if self.accuracy_range is not None and not self.accuracy_range[0] < self.accuracy_range[1]:
            problems.append(f"accuracy_range: expected [lo, hi] with lo < hi, got {list(self.accuracy_range)}")
        if self.validation_size >= self.train_size:
            problems.append(
                f"validation_size: must be smaller than train_size ({self.train_size}), got {self.validation_size}"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class ArmSpec(Settings):
    """One arm: an objective (or ablation) as overrides of the base training config."""

    name: str = ""
    """Arm name (run directories are <name>-seed<s>; set from the key in arms)."""
    overrides: Overrides = []
    """section.field=value overrides of the base training config, e.g. algorithm.name=grpo."""
    group: Literal["main", "ablation"] = "main"
    """"main" (the objectives compared) or "ablation" (variants of APMPO); ablations default to ablation_seeds."""
    seeds: Seeds | None = None
    """This arm's seeds (None: seeds, or ablation_seeds for an ablation)."""
    description: str = ""
    """One line for the report."""


class ReportSpec(Settings):
    """Where and how the report is written."""

    docs_dir: str = "docs/study"
    """Folder for the tables (CSV), the curves (PNG) and study.json."""
    results_md: str | None = "docs/results.md"
    """The Markdown report (None: not written)."""
    smooth: Annotated[int, Field(ge=1)] = 5
    """Moving-average window (steps) for the per-step training curves (1: none)."""
    late_fraction: float = Field(0.25, gt=0, le=1)
    """"Late training" = the last fraction of the steps (for the entropy comparison)."""


class PowerSpec(Settings):
    """Power of the comparisons and seed planning (the ``power:`` section; see :mod:`apmpo.study.plan`)."""

    power: float = Field(0.8, gt=0.05, lt=1)
    """Target power of the minimum detectable differences (two-sided paired t-test at alpha 0.05, the test of the 95% intervals)."""
    reference_difference: float = Field(2.0, gt=0)
    """A difference in held-out accuracy (points) whose power and seed count the report gives for every comparison."""
    target_mde: float | None = Field(None, gt=0)
    """Plan the seeds per arm from the pilot (the configured seeds) for this MDE in points (None: run the configured seeds only)."""
    seed_budget: Annotated[int, Field(ge=2)] | None = None
    """With target_mde: at most this many seeds per arm (None: no cap)."""

    @model_validator(mode="after")
    def _budget_needs_target(self) -> PowerSpec:
        if self.seed_budget is not None and self.target_mde is None:
            raise ValueError("seed_budget: needs target_mde (the seed budget caps the planned seeds)")
        return self


class StudyConfig(Settings):
    """A study: a base training config, arms x seeds, an optional warm-up, and where outputs go."""

    name: str
    """Identifier of the study (used in titles and file names)."""
    title: str = Field("", validate_default=True)
    """Heading of the report (default: the name)."""
    description: str = ""
    """Paragraph for the report: the setting and why it is sized as it is."""
    train_config: str | None = None
    """Base trainer YAML (a path, or a packaged config name) under the train mapping below."""
    train: dict[str, Any] = {}
    """Inline trainer config (the sections of TrainConfig), merged over train_config."""
    overrides: Overrides = []
    """section.field=value overrides applied to every run after train (before the arm's)."""
    warmup: WarmupConfig | None = None
    """Supervised warm-up from scratch (setting a); None: runs start from model.name."""
    seeds: Seeds
    """Seeds of the main arms (paired across arms), e.g. [0, 1, 2, 3, 4]."""
    ablation_seeds: Seeds | None = None
    """Seeds of the ablation arms (None: seeds)."""
    arms: dict[str, ArmSpec] = Field(min_length=1)
    """Arm name -> ArmSpec (or just its list of overrides), in report order."""
    baseline: str = "grpo"
    """The arm paired differences are taken against."""
    output_dir: str = "runs/study"
    """Run directories, logs and the warm-up go here."""
    report: ReportSpec = Field(default_factory=ReportSpec)
    """Report outputs."""
    power: PowerSpec = Field(default_factory=PowerSpec)
    """Power figures in the report and seed planning from a pilot."""
    jobs: Annotated[int, Field(ge=1)] = 1
    """Runs trained at once (worker processes); 1: one after the other in this process."""
    threads_per_run: Annotated[int, Field(ge=0)] = 1
    """torch threads per run (model.num_threads); 0: torch's default."""
    keep_checkpoints: bool = False
    """Keep each finished run's checkpoints (the report only needs the metrics)."""
    quick: dict[str, Any] = {}
    """Replacements applied by --quick (any top-level key; "overrides" are appended, "report" merged)."""
    source: str | None = None
    """The file the study was loaded from (set by load_study_config)."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name or "/" in name:
            raise ValueError(f"expected a plain name, got {name!r}")
        return name

    @field_validator("arms", mode="before")
    @classmethod
    def _arms(cls, arms: Any) -> Any:
        """An arm given as a list of overrides is the arm with those overrides; each arm learns its name."""
        if not isinstance(arms, dict):
            return arms
        out = {}
        for name, value in arms.items():
            if not isinstance(name, str) or not name or "/" in name or "-seed" in name:
                raise ValueError(f"bad arm name {name!r} (a plain name without '/' or '-seed')")
            value = {"overrides": value} if isinstance(value, list) else value
            out[name] = {**value, "name": name} if isinstance(value, dict) else value
        return out

    @field_validator("title")
    @classmethod
    def _title(cls, title: str, info: Any) -> str:
        return title or info.data.get("name", "")

    @field_validator("description")
    @classmethod
    def _description(cls, description: str) -> str:
        return description.strip()

    @model_validator(mode="after")
    def _baseline_is_an_arm(self) -> StudyConfig:
        if self.baseline not in self.arms:
            raise ValueError(f"baseline: {self.baseline!r} is not an arm (arms: {', '.join(self.arms)})")
        return self

    def seeds_of(self, arm: ArmSpec) -> list[int]:
        """The seeds ``arm`` runs."""
        if arm.seeds is not None:
            return list(arm.seeds)
        if arm.group == "ablation" and self.ablation_seeds is not None:
            return list(self.ablation_seeds)
        return list(self.seeds)


def study_config_from_dict(data: Any, source: str | None = None, *, quick: bool = False) -> StudyConfig:
    """A checked ``StudyConfig`` from a mapping (as read from YAML); ``quick`` applies its quick section."""
    where = source or "study config"
    if not isinstance(data, dict):
        raise StudyError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    data = copy.deepcopy(data)
    if quick:
        patch = data.get("quick") or {}
        if not patch:
            raise StudyError(f"{where}: --quick given but the config has no quick section")
        if "quick" in patch:
            raise StudyError(f"{where}: quick: cannot contain quick")
        for key, value in patch.items():
            if key == "overrides":
                data["overrides"] = list(data.get("overrides") or []) + list(value or [])
            elif key == "report":
                data["report"] = {**(data.get("report") or {}), **(value or {})}
            else:
                data[key] = value
    try:
        return build_settings(StudyConfig, {**data, "source": source}, source=source)
    except ConfigError as exc:
        raise StudyError(str(exc)) from None


def load_study_config(path: str | os.PathLike, *, quick: bool = False) -> StudyConfig:
    """Read a study YAML file (a path or the name of a packaged apmpo/configs/study_*.yaml), with its ``extends``."""
    resolved, data = _read_study_yaml(path)
    return study_config_from_dict(data, str(resolved), quick=quick)


def _read_study_yaml(path: str | os.PathLike, chain: tuple[Path, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """(resolved path, mapping) of a study YAML, with the study it ``extends`` merged in (module docstring)."""
    candidate = Path(path)
    if chain and not candidate.is_absolute() and (chain[-1].parent / candidate).is_file():
        candidate = chain[-1].parent / candidate
    try:
        resolved = resolve_config_path(os.fspath(candidate)).resolve()
        data = read_yaml(resolved, what="study config")
    except ConfigError as exc:
        raise StudyError(f"{chain[-1]}: extends: {exc}" if chain else str(exc)) from None
    if resolved in chain:
        through = " -> ".join(p.name for p in chain)
        raise StudyError(f"{chain[-1]}: extends: {resolved.name} extends itself (through {through})")
    if "extends" not in data:
        return resolved, data
    parent = data.pop("extends")
    if not isinstance(parent, str) or not parent:
        raise StudyError(f"{resolved}: extends: expected the file name of a study config, got {parent!r}")
    _, base = _read_study_yaml(parent, (*chain, resolved))
    merged = {**base, **{k: v for k, v in data.items() if k not in (*MERGED_SECTIONS, "arms")}}
    for key in MERGED_SECTIONS:
        if isinstance(base.get(key), dict) and isinstance(data.get(key), dict):
            merged[key] = deep_merge(base[key], data[key], replace=MAPPING_SETTINGS)
        elif key in data:
            merged[key] = data[key]
    if isinstance(base.get("arms"), dict) and isinstance(data.get("arms"), dict):
        arms = {**base["arms"], **data["arms"]}
        merged["arms"] = {name: spec for name, spec in arms.items() if spec is not None}
    elif "arms" in data:
        merged["arms"] = data["arms"]
    return resolved, merged


def restrict(
    study: StudyConfig,
    *,
    arms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    ablation_seeds: Sequence[int] | None = None,
    output_dir: str | None = None,
    overrides: Sequence[str] = (),
    jobs: int | None = None,
    target_mde: float | None = None,
    seed_budget: int | None = None,
) -> StudyConfig:
    """A copy of ``study`` with command-line choices applied (subset of arms, other seeds, seed planning, ...)."""
    changes: dict[str, Any] = {"overrides": [*study.overrides, *overrides]}
    planning = {k: v for k, v in (("target_mde", target_mde), ("seed_budget", seed_budget)) if v is not None}
    if planning:
        changes["power"] = {**study.power.model_dump(), **planning}
    if arms is not None:
        unknown = [a for a in arms if a not in study.arms]
        if unknown:
            raise StudyError(f"--arms: unknown arm(s) {', '.join(unknown)}; arms: {', '.join(study.arms)}")
        if study.baseline not in arms:
            raise StudyError(f"--arms: the baseline arm {study.baseline!r} is needed for the paired differences")
        changes["arms"] = {name: spec for name, spec in study.model_dump()["arms"].items() if name in arms}
    if seeds is not None:
        changes["seeds"] = list(seeds)
        changes["arms"] = {
            name: {**spec, "seeds": None} for name, spec in changes.get("arms", study.model_dump()["arms"]).items()
        }
    if ablation_seeds is not None:
        changes["ablation_seeds"] = list(ablation_seeds)
    if output_dir is not None:
        changes["output_dir"] = output_dir
    if jobs is not None:
        changes["jobs"] = jobs
    flags = {
        "seeds": "--seeds",
        "ablation_seeds": "--ablation-seeds",
        "jobs": "--jobs",
        "overrides": "overrides",
        "output_dir": "--output-dir",
        "power": "--target-mde / --seed-budget",
    }
    try:
        return build_settings(
            StudyConfig, {**study.model_dump(), **changes}, origins={key: flags[key] for key in changes if key in flags}
        )
    except ConfigError as exc:
        raise StudyError(str(exc)) from None

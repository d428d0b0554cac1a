"""The settings of a study: arms x paired seeds over a base training config, an optional warm-up, the report.

See :mod:`apmpo.study.runner` for what a study does; the fields are documented on
:class:`StudyConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from apmpo.study.warmup import WarmupConfig, WarmupError, warmup_config_from_dict
from apmpo.trainer.commands import resolve_config_path

__all__ = ["ARM_GROUPS", "ArmSpec", "ReportSpec", "StudyConfig", "StudyError", "load_study_config", "restrict",
           "study_config_from_dict"]

ARM_GROUPS = ("main", "ablation")

class StudyError(ValueError):
    """A problem with a study config, its output directory or one of its runs (the message names it)."""


# --------------------------------------------------------------------------- config


@dataclass
class ArmSpec:
    """One arm: an objective (or ablation) as overrides of the base training config."""

    name: str
    """Arm name (run directories are <name>-seed<s>)."""
    overrides: list[str] = field(default_factory=list)
    """section.field=value overrides of the base training config, e.g. algorithm.name=grpo."""
    group: str = "main"
    """"main" (the objectives compared) or "ablation" (variants of APMPO); ablations default to ablation_seeds."""
    seeds: list[int] | None = None
    """This arm's seeds (None: seeds, or ablation_seeds for an ablation)."""
    description: str = ""
    """One line for the report."""


@dataclass
class ReportSpec:
    """Where and how the report is written."""

    docs_dir: str = "docs/study"
    """Folder for the tables (CSV), the curves (PNG) and study.json."""
    results_md: str | None = "docs/results.md"
    """The Markdown report (None: not written)."""
    smooth: int = 5
    """Moving-average window (steps) for the per-step training curves (1: none)."""
    late_fraction: float = 0.25
    """"Late training" = the last fraction of the steps (for the entropy comparison)."""


@dataclass
class StudyConfig:
    """A study: a base training config, arms x seeds, an optional warm-up, and where outputs go."""

    name: str
    """Identifier of the study (used in titles and file names)."""
    title: str = ""
    """Heading of the report (default: the name)."""
    description: str = ""
    """Paragraph for the report: the setting and why it is sized as it is."""
    train_config: str | None = None
    """Base trainer YAML (a path, or a packaged config name) under the train mapping below."""
    train: dict = field(default_factory=dict)
    """Inline trainer config (the sections of TrainConfig), merged over train_config."""
    overrides: list[str] = field(default_factory=list)
    """section.field=value overrides applied to every run after train (before the arm's)."""
    warmup: WarmupConfig | None = None
    """Supervised warm-up from scratch (setting a); None: runs start from model.name."""
    seeds: list[int] = field(default_factory=list)
    """Seeds of the main arms (paired across arms)."""
    ablation_seeds: list[int] | None = None
    """Seeds of the ablation arms (None: seeds)."""
    arms: dict[str, ArmSpec] = field(default_factory=dict)
    """Arm name -> ArmSpec, in report order."""
    baseline: str = "grpo"
    """The arm paired differences are taken against."""
    output_dir: str = "runs/study"
    """Run directories, logs and the warm-up go here."""
    report: ReportSpec = field(default_factory=ReportSpec)
    """Report outputs."""
    jobs: int = 1
    """Runs trained at once (worker processes); 1: one after the other in this process."""
    threads_per_run: int = 1
    """torch threads per run (model.num_threads); 0: torch's default."""
    keep_checkpoints: bool = False
    """Keep each finished run's checkpoints (the report only needs the metrics)."""
    quick: dict = field(default_factory=dict)
    """Replacements applied by --quick (any top-level key; "overrides" are appended, "report" merged)."""
    source: str | None = None
    """The file the study was loaded from (set by load_study_config)."""

    def seeds_of(self, arm: ArmSpec) -> list[int]:
        """The seeds ``arm`` runs."""
        if arm.seeds is not None:
            return list(arm.seeds)
        if arm.group == "ablation" and self.ablation_seeds is not None:
            return list(self.ablation_seeds)
        return list(self.seeds)


def _where(source: str | None, key: str) -> str:
    return f"{source}: {key}" if source else key


def _int_list(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise StudyError(f"{where}: expected a non-empty list of integer seeds, got {value!r}")
    if len(set(value)) != len(value):
        raise StudyError(f"{where}: repeated seeds in {value!r}")
    return list(value)


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise StudyError(f"{where}: expected a list of section.field=value strings, got {value!r}")
    bad = [v for v in value if "=" not in v]
    if bad:
        raise StudyError(f"{where}: {bad[0]!r} is not section.field=value (e.g. algorithm.name=grpo)")
    return list(value)


def _check_keys(mapping: Any, cls: type, where: str, extra: Sequence[str] = ()) -> dict:
    if not isinstance(mapping, dict):
        raise StudyError(f"{where}: expected a mapping, got {mapping!r}")
    known = [f.name for f in dataclasses.fields(cls) if f.name not in ("name", "source")] + list(extra)
    unknown = sorted(str(k) for k in set(mapping) - set(known))
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return mapping


def _typed(mapping: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
    value = mapping.get(key, default)
    if value is default:
        return value
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)))
    if not ok:
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise StudyError(f"{where}.{key}: expected {names}, got {value!r}")
    return value


def _arm_from(name: str, value: Any, where: str) -> ArmSpec:
    if isinstance(value, list):
        return ArmSpec(name, _str_list(value, where))
    _check_keys(value, ArmSpec, where)
    group = _typed(value, "group", str, where, "main")
    if group not in ARM_GROUPS:
        raise StudyError(f"{where}.group: must be one of {', '.join(ARM_GROUPS)}, got {group!r}")
    seeds = value.get("seeds")
    return ArmSpec(
        name=name,
        overrides=_str_list(value.get("overrides"), f"{where}.overrides"),
        group=group,
        seeds=None if seeds is None else _int_list(seeds, f"{where}.seeds"),
        description=_typed(value, "description", str, where, ""),
    )


def study_config_from_dict(data: Any, source: str | None = None, *, quick: bool = False) -> StudyConfig:
    """A checked ``StudyConfig`` from a mapping (as read from YAML); ``quick`` applies its quick section."""
    where = source or "study config"
    if not isinstance(data, dict):
        raise StudyError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    _check_keys(data, StudyConfig, where, extra=("name",))
    data = copy.deepcopy(data)
    if quick:
        patch = data.get("quick") or {}
        if not patch:
            raise StudyError(f"{where}: --quick given but the config has no quick section")
        _check_keys(patch, StudyConfig, _where(source, "quick"), extra=("name",))
        for key, value in patch.items():
            if key == "overrides":
                data["overrides"] = list(data.get("overrides") or []) + list(value or [])
            elif key == "report":
                data["report"] = {**(data.get("report") or {}), **(value or {})}
            elif key == "quick":
                raise StudyError(f"{_where(source, 'quick')}: cannot contain quick")
            else:
                data[key] = value
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise StudyError(f"{_where(source, 'name')}: expected a plain name, got {name!r}")
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise StudyError(f"{_where(source, 'arms')}: expected a mapping of arm name -> settings, got {arms_raw!r}")
    arms = {}
    for arm_name, value in arms_raw.items():
        if not isinstance(arm_name, str) or not arm_name or "/" in arm_name or "-seed" in arm_name:
            raise StudyError(f"{_where(source, 'arms')}: bad arm name {arm_name!r} (a plain name without '/' or '-seed')")
        arms[arm_name] = _arm_from(arm_name, value, _where(source, f"arms.{arm_name}"))
    report_raw = _check_keys(data.get("report") or {}, ReportSpec, _where(source, "report"))
    report = ReportSpec(
        docs_dir=_typed(report_raw, "docs_dir", str, _where(source, "report"), ReportSpec.docs_dir),
        results_md=report_raw.get("results_md", ReportSpec.results_md),
        smooth=_typed(report_raw, "smooth", int, _where(source, "report"), ReportSpec.smooth),
        late_fraction=float(_typed(report_raw, "late_fraction", (int, float), _where(source, "report"), ReportSpec.late_fraction)),
    )
    if report.results_md is not None and not isinstance(report.results_md, str):
        raise StudyError(f"{_where(source, 'report.results_md')}: expected a path or null, got {report.results_md!r}")
    if report.smooth < 1 or not 0 < report.late_fraction <= 1:
        raise StudyError(f"{_where(source, 'report')}: smooth must be >= 1 and late_fraction in (0, 1]")
    warmup = data.get("warmup")
    try:
        warmup_cfg = None if warmup is None else warmup_config_from_dict(warmup, _where(source, "warmup"))
    except WarmupError as exc:
        raise StudyError(str(exc)) from None
    if "seeds" not in data:
        raise StudyError(f"{_where(source, 'seeds')}: required (e.g. seeds: [0, 1, 2, 3, 4])")
    train = data.get("train") or {}
    if not isinstance(train, dict):
        raise StudyError(f"{_where(source, 'train')}: expected a mapping of trainer config sections, got {train!r}")
    study = StudyConfig(
        name=name,
        title=_typed(data, "title", str, where, "") or name,
        description=_typed(data, "description", str, where, "").strip(),
        train_config=_typed(data, "train_config", str, where, None),
        train=train,
        overrides=_str_list(data.get("overrides"), _where(source, "overrides")),
        warmup=warmup_cfg,
        seeds=_int_list(data["seeds"], _where(source, "seeds")),
        ablation_seeds=None if data.get("ablation_seeds") is None else _int_list(data["ablation_seeds"], _where(source, "ablation_seeds")),
        arms=arms,
        baseline=_typed(data, "baseline", str, where, "grpo"),
        output_dir=_typed(data, "output_dir", str, where, "runs/study"),
        report=report,
        jobs=_typed(data, "jobs", int, where, 1),
        threads_per_run=_typed(data, "threads_per_run", int, where, 1),
        keep_checkpoints=_typed(data, "keep_checkpoints", bool, where, False),
        quick=data.get("quick") or {},
        source=source,
    )
    if study.baseline not in study.arms:
        raise StudyError(f"{_where(source, 'baseline')}: {study.baseline!r} is not an arm (arms: {', '.join(study.arms)})")
    if study.jobs < 1 or study.threads_per_run < 0:
        raise StudyError(f"{where}: jobs must be >= 1 and threads_per_run >= 0")
    return study


def load_study_config(path: str | os.PathLike, *, quick: bool = False) -> StudyConfig:
    """Read a study YAML file (a path or the name of a packaged apmpo/configs/study_*.yaml)."""
    try:
        resolved = resolve_config_path(os.fspath(path))
    except ValueError as exc:
        raise StudyError(str(exc)) from None
    try:
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyError(f"{resolved}: not valid YAML ({exc})") from None
    return study_config_from_dict(data, str(resolved), quick=quick)


def restrict(study: StudyConfig, *, arms: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
             ablation_seeds: Sequence[int] | None = None, output_dir: str | None = None,
             overrides: Sequence[str] = (), jobs: int | None = None) -> StudyConfig:
    """A copy of ``study`` with command-line choices applied (subset of arms, other seeds, ...)."""
    study = copy.deepcopy(study)
    if arms is not None:
        unknown = [a for a in arms if a not in study.arms]
        if unknown:
            raise StudyError(f"--arms: unknown arm(s) {', '.join(unknown)}; arms: {', '.join(study.arms)}")
        if study.baseline not in arms:
            raise StudyError(f"--arms: the baseline arm {study.baseline!r} is needed for the paired differences")
        study.arms = {name: spec for name, spec in study.arms.items() if name in arms}
    if seeds is not None:
        study.seeds = _int_list(list(seeds), "--seeds")
        for arm in study.arms.values():
            arm.seeds = None
    if ablation_seeds is not None:
        study.ablation_seeds = _int_list(list(ablation_seeds), "--ablation-seeds")
    if output_dir is not None:
        study.output_dir = output_dir
    if jobs is not None:
        if jobs < 1:
            raise StudyError(f"--jobs: must be >= 1, got {jobs}")
        study.jobs = jobs
    study.overrides = [*study.overrides, *_str_list(list(overrides), "overrides")]
    return study



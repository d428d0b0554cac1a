"""``apmpo study``: APMPO vs GRPO / DAPO / GMPO and the paper's ablations, over paired seeds.

The paper (arXiv 2605.04066) makes comparative claims: APMPO beats GRPO, DAPO and GMPO;
PMPO (the adaptive power mean) gives most of the gain and FAC (the adaptive clip) the
rest; entropy under APMPO decays slower than under GRPO and faster than under GMPO. A
study checks such claims on a given model and task with one command, from a YAML file
(``apmpo/configs/study_*.yaml``; fields documented on :class:`StudyConfig`):

1. the base training config (a trainer YAML and/or an inline ``train:`` mapping, plus
   ``section.field=value`` overrides) is what every run shares;
2. optionally a supervised warm-up (:mod:`apmpo.eval.warmup`) trains a model from
   scratch to moderate accuracy, once; every run starts from the saved directory;
3. every arm (its own overrides: ``algorithm.name=grpo``, an APMPO ablation such as
   ``algorithm.params.clip_schedule=fixed``, ...) runs once per seed, each run an
   ordinary trainer run (:func:`apmpo.trainer.train`) in ``<output_dir>/runs/<arm>-seed<s>``
   with its log in ``<output_dir>/logs``. Runs go through a pool of ``jobs`` worker
   processes (one torch thread each by default), or in this process with ``jobs = 1``;
4. from the run directories' ``metrics.jsonl`` the report (:mod:`apmpo.eval.study_report`)
   computes the results table (final and best held-out accuracy, mean and 95%
   t-interval over seeds, paired differences vs the baseline), the curves (PNG) and
   ``results.md``, with a "what holds here" section derived from the numbers.

Seeds are paired across arms: seed s of every arm starts from the same weights (the
warm-up model, or the same seeded initialisation), visits the training prompts in the
same order (the trainer's sampler is seeded by ``seed``) and draws its first rollout
from the same random state, so differences between arms at a seed come from the
objective alone, and paired differences remove the shared seed-to-seed variation.

Each training invocation is appended to ``<output_dir>/invocations.jsonl`` (command,
start, wall time, runs trained, machine, code version), so the report can cite the exact
commands that produced the numbers, also when it is rebuilt with ``--report-only``.

Stopping: on SIGTERM or SIGINT (:mod:`apmpo.preemption`) ``apmpo study`` stops
cleanly. Queued runs are not started; each running training finishes or abandons its
current step and checkpoints the last completed one, exactly as ``apmpo train`` does
(in this process with ``jobs = 1``; with a pool, the request is relayed to the worker
processes through a shared event, which each worker turns into a SIGUSR1 to itself --
workers ignore SIGTERM and SIGINT, so a Ctrl-C sent to the whole process group or a
scheduler's group-wide SIGTERM does not reach them twice); the study waits for them and
exits with status 75. A signal during the warm-up abandons it (it is saved only when
finished, and starts again on the next invocation). A second signal stops at once:
the workers are killed, and their runs resume from their last complete checkpoints.

Resuming: run the same command again. A run whose ``summary.json`` reports all its
steps is skipped (if its stored ``config.yaml`` differs from the planned config in
anything but thread count or progress style, the study stops with the differing keys
instead of mixing settings); an interrupted run continues from its latest checkpoint
(``checkpoint.every``), or restarts when it has none. Finished runs' checkpoints are
deleted unless ``keep_checkpoints`` (the metrics are all the report needs).

Departures and choices: all arms share every setting except the objective and what
defines the baseline (DAPO's dynamic sampling and overlong shaping are part of the
DAPO arm in the packaged configs); "best" held-out accuracy is the maximum over the
periodic evaluations after step 0, i.e. selected on the held-out set itself
(optimistic; "final" is the unbiased number).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import dataclasses
import datetime as _dt
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from apmpo.eval.warmup import WarmupConfig, WarmupError, WarmupResult, ensure_warmup, warmup_config_from_dict
from apmpo.preemption import Preempted, StepAbandoned, StopRequest

__all__ = [
    "ARM_GROUPS",
    "ArmSpec",
    "PlannedRun",
    "ReportSpec",
    "RunRecord",
    "StudyConfig",
    "StudyError",
    "StudyResult",
    "collect_runs",
    "load_study_config",
    "plan_runs",
    "read_invocations",
    "run_status",
    "run_study",
    "study_config_from_dict",
]

ARM_GROUPS = ("main", "ablation")
IGNORED_CONFIG_KEYS = (
    ("model", "num_threads"),
    ("logging", "progress"),
    ("logging", "output_dir"),
    ("logging", "run_name"),
)
"""Settings that may differ between a finished run and the plan without making it stale (thread count,
progress style, and where the study directory is: it may be moved or reached by another relative path)."""


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
    ok = isinstance(value, kind) and not (
        isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    )
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
            raise StudyError(
                f"{_where(source, 'arms')}: bad arm name {arm_name!r} (a plain name without '/' or '-seed')"
            )
        arms[arm_name] = _arm_from(arm_name, value, _where(source, f"arms.{arm_name}"))
    report_raw = _check_keys(data.get("report") or {}, ReportSpec, _where(source, "report"))
    report = ReportSpec(
        docs_dir=_typed(report_raw, "docs_dir", str, _where(source, "report"), ReportSpec.docs_dir),
        results_md=report_raw.get("results_md", ReportSpec.results_md),
        smooth=_typed(report_raw, "smooth", int, _where(source, "report"), ReportSpec.smooth),
        late_fraction=float(
            _typed(report_raw, "late_fraction", (int, float), _where(source, "report"), ReportSpec.late_fraction)
        ),
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
        ablation_seeds=None
        if data.get("ablation_seeds") is None
        else _int_list(data["ablation_seeds"], _where(source, "ablation_seeds")),
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
        raise StudyError(
            f"{_where(source, 'baseline')}: {study.baseline!r} is not an arm (arms: {', '.join(study.arms)})"
        )
    if study.jobs < 1 or study.threads_per_run < 0:
        raise StudyError(f"{where}: jobs must be >= 1 and threads_per_run >= 0")
    return study


def load_study_config(path: str | os.PathLike, *, quick: bool = False) -> StudyConfig:
    """Read a study YAML file (a path or the name of a packaged apmpo/configs/study_*.yaml)."""
    from apmpo.trainer.commands import resolve_config_path

    try:
        resolved = resolve_config_path(os.fspath(path))
    except ValueError as exc:
        raise StudyError(str(exc)) from None
    try:
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyError(f"{resolved}: not valid YAML ({exc})") from None
    return study_config_from_dict(data, str(resolved), quick=quick)


def restrict(
    study: StudyConfig,
    *,
    arms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    ablation_seeds: Sequence[int] | None = None,
    output_dir: str | None = None,
    overrides: Sequence[str] = (),
    jobs: int | None = None,
) -> StudyConfig:
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


# --------------------------------------------------------------------------- planning


@dataclass
class PlannedRun:
    """One trainer run of the study."""

    arm: str
    """Arm name."""
    seed: int
    """Seed (paired across arms)."""
    config: Any
    """Its TrainConfig."""

    @property
    def name(self) -> str:
        """Run directory name."""
        return f"{self.arm}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        """Run directory."""
        return Path(self.config.logging.output_dir) / self.config.logging.run_name


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("params", "task", "functions", "kwargs")
        ):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def base_train_config(study: StudyConfig):
    """The TrainConfig every run starts from: train_config file, then train, then overrides."""
    from apmpo.trainer.commands import resolve_config_path
    from apmpo.trainer.config import ConfigError, apply_overrides, config_from_dict

    data: dict = {}
    source = study.source
    try:
        if study.train_config is not None:
            path = Path(study.train_config)
            if not path.is_absolute() and study.source and (Path(study.source).parent / path).is_file():
                path = Path(study.source).parent / path
            path = resolve_config_path(str(path))
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            source = str(path)
        config = config_from_dict(_deep_merge(data, study.train), source)
        return apply_overrides(config, study.overrides)
    except ConfigError as exc:
        raise StudyError(f"{_where(study.source, 'train')}: {exc}") from None


def plan_runs(study: StudyConfig, model_dir: str | os.PathLike | None = None) -> list[PlannedRun]:
    """Every (arm, seed) run with its training config, arm by arm in config order.

    ``model_dir`` (the warm-up model) replaces ``model.name``. Each config is checked
    without touching the file system (that check runs once the warm-up exists).
    """
    from apmpo.trainer.config import ConfigError, apply_overrides, validate_config

    base = base_train_config(study)
    runs, problems = [], []
    for arm in study.arms.values():
        try:
            arm_config = apply_overrides(base, arm.overrides)
        except ConfigError as exc:
            problems.append(f"arms.{arm.name}: {exc}")
            continue
        for seed in study.seeds_of(arm):
            forced = [
                f"seed={seed}",
                f"logging.output_dir={Path(study.output_dir) / 'runs'}",
                f"logging.run_name={arm.name}-seed{seed}",
                f"model.num_threads={study.threads_per_run}",
            ]
            if model_dir is not None:
                forced.append(f"model.name={model_dir}")
            config = apply_overrides(arm_config, forced)
            try:
                validate_config(config, check_files=False)
            except ConfigError as exc:
                problems.append(f"arms.{arm.name} (seed {seed}): {exc}")
                break
            runs.append(PlannedRun(arm.name, seed, config))
    if problems:
        raise StudyError(f"{study.source or study.name}: invalid run configuration:\n  " + "\n  ".join(problems))
    return runs


# --------------------------------------------------------------------------- status


def _comparable(config_dict: dict, warmup: bool) -> dict:
    """The settings that define a run; with a warm-up, model.name is the warm-up directory inside the
    study directory, whose identity ensure_warmup checks by fingerprint."""
    out = copy.deepcopy(config_dict)
    for section, key in IGNORED_CONFIG_KEYS + ((("model", "name"),) if warmup else ()):
        out.get(section, {}).pop(key, None)
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {b!r} (stored) vs {a!r} (planned)"]


def run_status(run: PlannedRun, warmup: bool = False) -> str:
    """ "done", "resume" (a checkpoint to continue from), "restart" (incomplete, no checkpoint) or "new".

    Raises StudyError when the directory holds a run made with a different config (``warmup``: the
    study has a warm-up, so model.name is a location, not a setting).
    """
    from apmpo.trainer.checkpoint import latest_checkpoint
    from apmpo.trainer.config import ConfigError, config_to_dict, load_config

    run_dir = run.run_dir
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    stored_path = run_dir / "config.yaml"
    if stored_path.is_file():
        try:
            stored = config_to_dict(load_config(stored_path))
        except ConfigError as exc:
            raise StudyError(
                f"{run_dir}: unreadable config.yaml ({exc}); delete the run directory to redo it"
            ) from None
        diff = _differences(_comparable(config_to_dict(run.config), warmup), _comparable(stored, warmup))
        if diff:
            shown = "; ".join(diff[:6]) + (f"; ... ({len(diff)} in all)" if len(diff) > 6 else "")
            raise StudyError(
                f"{run_dir}: holds a run made with another configuration ({shown}); "
                "use another output_dir (--output-dir) or delete that run directory"
            )
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            summary = {}
        if summary.get("steps") == run.config.steps:
            return "done"
    return "resume" if latest_checkpoint(run_dir) is not None else "restart"


# --------------------------------------------------------------------------- execution


_WORKER_STOP: StopRequest | None = None
"""In a pool worker: the stop request relayed from the study process (set by ``_init_worker``)."""


def _train_one(payload: dict, stop: StopRequest | None = None) -> dict:
    """Worker: train one run (output to its log file); never raises, returns what happened.

    ``stop`` (default: the worker's relayed request): a stop requested before the run
    starts skips it; one requested during it checkpoints it (outcome ``"preempted"``).
    """
    t0 = time.perf_counter()
    stop = stop or _WORKER_STOP or StopRequest()
    if stop.requested:
        return {"name": payload["name"], "ok": False, "preempted": True, "started": False, "seconds": 0.0}
    log_path = Path(payload["log"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import torch

        from apmpo.trainer.config import config_from_dict
        from apmpo.trainer.loop import train

        config = config_from_dict(payload["config"])
        if config.model.num_threads:
            torch.set_num_threads(config.model.num_threads)
        with (
            open(log_path, "a", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            print(f"=== {payload['name']}: {payload['status']} at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
            result = train(config, resume=payload["resume"] or False, stop=stop)
        if not payload["keep_checkpoints"]:
            shutil.rmtree(Path(result.run_dir) / "checkpoints", ignore_errors=True)
        return {
            "name": payload["name"],
            "ok": True,
            "seconds": time.perf_counter() - t0,
            "before": result.eval_before,
            "after": result.eval_after,
        }
    except Preempted as exc:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"=== {payload['name']}: {exc}\n")
        return {
            "name": payload["name"],
            "ok": False,
            "preempted": True,
            "started": True,
            "seconds": time.perf_counter() - t0,
            "message": str(exc),
        }
    except BaseException as exc:  # reported by the parent with the log path; KeyboardInterrupt too
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(traceback.format_exc())
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {
            "name": payload["name"],
            "ok": False,
            "seconds": time.perf_counter() - t0,
            "error": f"{type(exc).__name__}: {exc}",
        }


def _die_with_parent(parent_pid: int) -> None:
    """End the worker when the study process ends, however it ends.

    On Linux the kernel sends SIGKILL to the worker when its parent dies (PR_SET_PDEATHSIG),
    so killing ``apmpo study`` never leaves runs training on their own (a killed run
    resumes from its last atomic checkpoint on the next invocation). Elsewhere the parent
    kills its workers when it is interrupted (see ``_execute``).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _relay(event: Any) -> None:
    """Worker thread: when the study asks the workers to stop, deliver SIGUSR1 to this process's main thread."""
    event.wait()
    os.kill(os.getpid(), signal.SIGUSR1)


def _init_worker(parent_pid: int, stop_event: Any) -> None:
    """Worker initializer: die with the study process, ignore SIGTERM / SIGINT, stop cleanly when the study asks.

    The study relays its stop request by setting ``stop_event``; a thread of the worker
    then sends SIGUSR1 to the worker itself, whose handler (installed here, before the
    thread starts, so the signal can never find the default action) records the request
    for the training that is running (:data:`_WORKER_STOP`).
    """
    global _WORKER_STOP
    _die_with_parent(parent_pid)
    for signum in (signal.SIGTERM, signal.SIGINT):  # only the study process decides when its workers stop
        signal.signal(signum, signal.SIG_IGN)
    _WORKER_STOP = StopRequest(signals=(signal.SIGUSR1,), notice=None).install()
    threading.Thread(target=_relay, args=(stop_event,), daemon=True, name="apmpo-stop-relay").start()


def _payload(run: PlannedRun, status: str, study: StudyConfig) -> dict:
    from apmpo.trainer.config import config_to_dict

    return {
        "name": run.name,
        "status": status,
        "config": config_to_dict(run.config),
        "resume": str(run.run_dir) if status == "resume" else None,
        "log": str(Path(study.output_dir) / "logs" / f"{run.name}.log"),
        "keep_checkpoints": study.keep_checkpoints,
    }


def _execute(
    payloads: list[dict], jobs: int, log: Callable[[str], None], stop: StopRequest | None = None
) -> list[dict]:
    """Train the payloads (in this process with jobs = 1, else in a spawn pool); results in completion order.

    After a stop request (``stop``) no further run starts, and the running ones end with
    a checkpoint (outcome ``"preempted"``).
    """
    results: list[dict] = []
    total = len(payloads)
    stop = stop or StopRequest()

    def report(outcome: dict) -> None:
        results.append(outcome)
        head = f"[{len(results)}/{total}] {outcome['name']}"
        if outcome.get("preempted"):
            log(f"{head}: {outcome['message']}" if outcome["started"] else f"{head}: not started (stop requested)")
        elif outcome["ok"]:
            fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
            log(
                f"{head}: done in {outcome['seconds']:.0f} s, held-out {fmt(outcome['before'])} -> {fmt(outcome['after'])}"
            )
        else:
            log(f"{head}: FAILED after {outcome['seconds']:.0f} s: {outcome['error']}")

    if jobs == 1 or len(payloads) <= 1 or stop.requested:
        for payload in payloads:
            if stop.requested:
                break
            report(_train_one(payload, stop))
        return results
    context = multiprocessing.get_context("spawn")
    relay = context.Event()
    forget = stop.on_request(relay.set)
    pool = cf.ProcessPoolExecutor(
        max_workers=min(jobs, len(payloads)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(), relay),
    )
    try:
        futures = {pool.submit(_train_one, p): p for p in payloads}
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                try:
                    report(future.result())
                except (cf.BrokenExecutor, OSError) as exc:  # the worker process itself died
                    report(
                        {
                            "name": futures[future]["name"],
                            "ok": False,
                            "seconds": 0.0,
                            "error": f"worker process failed: {type(exc).__name__}: {exc}",
                        }
                    )
            if stop.requested:  # queued runs never start; running ones end with a checkpoint
                pending = {f for f in pending if not f.cancel()}
    except BaseException:  # a second signal or an error: stop the running trainings at once too
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        forget()
    pool.shutdown(wait=True)
    return results


# --------------------------------------------------------------------------- collection


@dataclass
class RunRecord:
    """A finished run, read back from its directory."""

    arm: str
    """Arm name."""
    seed: int
    """Seed."""
    run_dir: Path
    """Run directory."""
    steps: int
    """Steps trained."""
    evals: dict[int, float]
    """Held-out accuracy by step (step 0 = before training)."""
    train: list[dict[str, Any]]
    """Per-step training metrics (metrics.jsonl, kind "train"), in step order."""
    wall_seconds: float
    """Wall time of the run's last invocation."""

    @property
    def initial(self) -> float | None:
        """Held-out accuracy before training."""
        return self.evals.get(0)

    @property
    def final(self) -> float | None:
        """Held-out accuracy after the last step."""
        return self.evals.get(self.steps)

    @property
    def best(self) -> float | None:
        """Highest held-out accuracy over the evaluations after step 0."""
        later = [v for s, v in self.evals.items() if s > 0]
        return max(later) if later else None

    def late_mean(self, key: str, fraction: float) -> float | None:
        """Mean of a training metric over the last ``fraction`` of the steps (None if never logged)."""
        first = self.steps - max(1, math.ceil(fraction * self.steps)) + 1
        values = [r[key] for r in self.train if r["step"] >= first and isinstance(r.get(key), (int, float))]
        return sum(values) / len(values) if values else None


def collect_runs(runs: Sequence[PlannedRun]) -> tuple[list[RunRecord], list[str]]:
    """(records of the finished runs, names of the runs that are not finished)."""
    from apmpo.trainer.tracking import read_jsonl

    records, missing = [], []
    for run in runs:
        summary_path = run.run_dir / "summary.json"
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
        if summary.get("steps") != run.config.steps:
            missing.append(run.name)
            continue
        metrics = read_jsonl(run.run_dir / "metrics.jsonl")
        evals = {
            int(r["step"]): float(r["accuracy"])
            for r in metrics
            if r.get("kind") == "eval" and isinstance(r.get("accuracy"), (int, float))
        }
        train = sorted((r for r in metrics if r.get("kind", "train") == "train"), key=lambda r: r["step"])
        records.append(
            RunRecord(
                run.arm,
                run.seed,
                run.run_dir,
                run.config.steps,
                evals,
                train,
                float(summary.get("wall_seconds") or 0.0),
            )
        )
    return records, missing


# --------------------------------------------------------------------------- the study


@dataclass
class StudyResult:
    """What ``run_study`` did."""

    runs: list[RunRecord]
    """Every finished run of the plan."""
    trained: list[str]
    """Runs trained by this invocation."""
    skipped: list[str]
    """Runs found finished and skipped."""
    missing: list[str]
    """Planned runs without results (report-only on an unfinished study)."""
    warmup: WarmupResult | None
    """The warm-up (None without one)."""
    wall_seconds: float
    """Wall time of this invocation."""
    report_files: list[Path] = field(default_factory=list)
    """Files the report wrote."""


def run_study(
    study: StudyConfig,
    *,
    command: str | None = None,
    report: bool = True,
    report_only: bool = False,
    dry_run: bool = False,
    full_study: StudyConfig | None = None,
    log: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> StudyResult:
    """Warm up (if configured), train every pending run, then write the report.

    Args:
        study: the study (after ``--quick`` / command-line restrictions).
        command: the exact command line, for the report (default: this Python call).
        report: write tables, curves and results.md at the end.
        report_only: train nothing; report on the runs already finished.
        dry_run: print the plan and each run's status, train nothing, write nothing.
        full_study: the study as configured, before --quick / restrictions, so the
            report can say what a full run would be (default: ``study``).
        log: progress lines (default: print to stdout).
        stop: the stop request of ``apmpo study`` (see the module docstring); on a stop
            signal this raises ``apmpo.preemption.Preempted`` once the running
            trainings are checkpointed.
    """
    log = log or (lambda text: print(text, flush=True))
    stop = stop or StopRequest()
    t0 = time.perf_counter()
    plan = plan_runs(study, model_dir=_warmup_dir(study) / "model" if study.warmup else None)
    log(f"study {study.name}: {len(study.arms)} arms, {len(plan)} runs, output {study.output_dir}")
    if dry_run:
        for run in plan:
            log(f"  {run.name:28s} {run_status(run, study.warmup is not None)}")
        return StudyResult([], [], [], [r.name for r in plan], None, time.perf_counter() - t0)

    from apmpo.eval.study_report import git_state, machine_info

    command = command or _default_command()
    started, machine = _dt.datetime.now().isoformat(timespec="seconds"), machine_info()
    warmup = None
    if study.warmup is not None:
        if report_only:
            warmup = _read_warmup(_warmup_dir(study))
        else:
            try:
                with stop.abandonable():  # saved only when finished: nothing to keep from a stopped warm-up
                    warmup = ensure_warmup(study.warmup, base_train_config(study), _warmup_dir(study), log=log)
            except StepAbandoned:
                raise Preempted(
                    f"stopped by {stop.signal_name} during the warm-up, which starts again when the study is run again"
                ) from None
    statuses = {run.name: run_status(run, study.warmup is not None) for run in plan}
    trained: list[str] = []
    if not report_only:
        from apmpo.trainer.config import ConfigError, validate_config

        for run in plan:
            try:
                validate_config(run.config)
            except ConfigError as exc:
                raise StudyError(f"arms.{run.arm} (seed {run.seed}): {exc}") from None
        pending = [run for run in plan if statuses[run.name] != "done"]
        skipped_now = len(plan) - len(pending)
        log(f"{skipped_now} runs already finished, {len(pending)} to train with {study.jobs} job(s)")
        for run in pending:
            if statuses[run.name] == "restart":  # interrupted before its first checkpoint: nothing to keep
                log(f"{run.name}: incomplete and without a checkpoint, starting it again")
                shutil.rmtree(run.run_dir)
        payloads = [_payload(run, statuses[run.name], study) for run in pending]
        outcomes = _execute(payloads, study.jobs, log, stop)
        stopped = [o for o in outcomes if o.get("preempted")]
        failures = [o for o in outcomes if not o["ok"] and not o.get("preempted")]
        trained = [o["name"] for o in outcomes if o["ok"]]
        if trained or (warmup is not None and not warmup.reused):
            _record_invocation(
                study,
                {
                    "command": command,
                    "started": started,
                    "wall_seconds": time.perf_counter() - t0,
                    "trained": len(trained),
                    "failed": len(failures),
                    "reused": len(plan) - len(pending),
                    "warmup_trained": warmup is not None and not warmup.reused,
                    "jobs": study.jobs,
                    "threads_per_run": study.threads_per_run,
                    "machine": machine,
                    "code": git_state(),
                },
            )
        if stop.requested:
            started = sum(1 for o in stopped if o["started"])
            raise Preempted(
                f"stopped by {stop.signal_name}: {len(trained)} runs finished now, {started} checkpointed at "
                f"their last completed step, {len(payloads) - len(trained) - started} not started"
                + (f", {len(failures)} failed" if failures else "")
            )
        if failures:
            lines = [
                f"{o['name']}: {o['error']} (log: {Path(study.output_dir) / 'logs' / (o['name'] + '.log')})"
                for o in failures
            ]
            raise StudyError(
                f"{len(failures)} of {len(payloads)} runs failed (finished runs are kept; rerun to retry):\n  "
                + "\n  ".join(lines)
            )
    records, missing = collect_runs(plan)
    skipped = [r.name for r in plan if statuses[r.name] == "done"]
    result = StudyResult(records, trained, skipped, missing, warmup, time.perf_counter() - t0)
    if report:
        from apmpo.eval.study_report import write_report

        if not records:
            raise StudyError(f"{study.output_dir}: no finished runs to report on")
        result.report_files = write_report(
            study,
            result,
            command=command,
            full_study=full_study or study,
            planned=plan,
            invocations=read_invocations(study),
            report_only=report_only,
        )
        for path in result.report_files:
            log(f"wrote {path}")
    result.wall_seconds = time.perf_counter() - t0
    return result


INVOCATIONS_FILE = "invocations.jsonl"


def _record_invocation(study: StudyConfig, record: dict) -> None:
    from apmpo.trainer.tracking import append_jsonl

    Path(study.output_dir).mkdir(parents=True, exist_ok=True)
    append_jsonl(Path(study.output_dir) / INVOCATIONS_FILE, record)


def read_invocations(study: StudyConfig) -> list[dict]:
    """The training invocations of the study so far (command, start, wall time, runs trained, machine, code)."""
    from apmpo.trainer.tracking import read_jsonl

    return read_jsonl(Path(study.output_dir) / INVOCATIONS_FILE)


def _warmup_dir(study: StudyConfig) -> Path:
    return Path(study.output_dir) / "warmup"


def _read_warmup(directory: Path) -> WarmupResult | None:
    path = directory / "warmup.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return WarmupResult(
        directory / "model",
        int(record["steps"]),
        float(record["validation_accuracy"]),
        record.get("heldout_accuracy"),
        list(record.get("history", [])),
        float(record.get("wall_seconds", 0.0)),
        int(record.get("parameters", 0)),
        reused=True,
    )


def _default_command() -> str:
    import shlex

    return (
        shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        if sys.argv and sys.argv[0]
        else "apmpo.eval.study.run_study(...)"
    )

"""The runs of a study: planning each (arm, seed) training config, their status, and reading back results."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apmpo.settings import deep_merge, read_yaml
from apmpo.study.config import MAPPING_SETTINGS, StudyConfig, StudyError
from apmpo.study.warmup import WarmupResult
from apmpo.trainer.checkpoint import latest_checkpoint
from apmpo.trainer.commands import resolve_config_path
from apmpo.trainer.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    validate_config,
)
from apmpo.trainer.tracking import append_jsonl, read_jsonl

__all__ = [
    "INVOCATIONS_FILE",
    "PlannedRun",
    "RunRecord",
    "StudyResult",
    "base_train_config",
    "collect_runs",
    "plan_runs",
    "read_invocations",
    "record_invocation",
    "run_status",
    "warmup_dir",
]

IGNORED_CONFIG_KEYS = (
    ("model", "num_threads"),
    ("logging", "progress"),
    ("logging", "output_dir"),
    ("logging", "run_name"),
)
"""Settings that may differ between a finished run and the plan without making it stale (thread count,
progress style, and where the study directory is: it may be moved or reached by another relative path)."""


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


def base_train_config(study: StudyConfig) -> TrainConfig:
    """The TrainConfig every run starts from: train_config file, then train, then overrides."""

    data: dict = {}
    source = study.source
    try:
        if study.train_config is not None:
            path = Path(study.train_config)
            if not path.is_absolute() and study.source and (Path(study.source).parent / path).is_file():
                path = Path(study.source).parent / path
            path = resolve_config_path(str(path))
            data = read_yaml(path)
            source = str(path)
        config = config_from_dict(deep_merge(data, study.train, replace=MAPPING_SETTINGS), source)
        return apply_overrides(config, study.overrides)
    except ConfigError as exc:
        raise StudyError(f"{study.source or study.name}: train: {exc}") from None


def plan_runs(study: StudyConfig, model_dir: str | os.PathLike | None = None) -> list[PlannedRun]:
    """Every (arm, seed) run with its training config, arm by arm in config order.

    ``model_dir`` (the warm-up model) replaces ``model.name``. Each config is checked
    without touching the file system (that check runs once the warm-up exists).
    """
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


def stored_run_config(path: str | os.PathLike) -> dict:
    """A run's saved config.yaml as a dict with every setting. A run saved before ``rollout.engine`` existed
    (its config.yaml has no such key) was sampled by transformers' ``generate``: its engine is ``hf``, not
    today's default (the trainer reads a checkpoint the same way)."""
    saved = read_yaml(path)
    stored = config_to_dict(config_from_dict(saved, source=os.fspath(path)))
    if "engine" not in (saved.get("rollout") or {}):
        stored["rollout"]["engine"] = "hf"
    return stored


def run_status(run: PlannedRun, warmup: bool = False) -> str:
    """ "done", "resume" (a checkpoint to continue from), "restart" (incomplete, no checkpoint) or "new".

    Raises StudyError when the directory holds a run made with a different config (``warmup``: the
    study has a warm-up, so model.name is a location, not a setting).
    """

    run_dir = run.run_dir
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    stored_path = run_dir / "config.yaml"
    if stored_path.is_file():
        try:
            stored = stored_run_config(stored_path)
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
    seed_plan: Any = None
    """The seed plan (apmpo.study.plan.SeedPlan) when the study planned its seeds from a pilot."""


INVOCATIONS_FILE = "invocations.jsonl"


def record_invocation(study: StudyConfig, record: dict) -> None:
    Path(study.output_dir).mkdir(parents=True, exist_ok=True)
    append_jsonl(Path(study.output_dir) / INVOCATIONS_FILE, record)


def read_invocations(study: StudyConfig) -> list[dict]:
    """The training invocations of the study so far (command, start, wall time, runs trained, machine, code)."""
    return read_jsonl(Path(study.output_dir) / INVOCATIONS_FILE)


def warmup_dir(study: StudyConfig) -> Path:
    return Path(study.output_dir) / "warmup"


def read_warmup(directory: Path) -> WarmupResult | None:
    path = directory / "warmup.json"
    if not path.is_file():
        return None
    return WarmupResult.from_record(directory, json.loads(path.read_text(encoding="utf-8")))

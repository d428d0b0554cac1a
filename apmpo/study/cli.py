"""``apmpo study``: run a comparison study (arms x paired seeds) and write its report.

``register(subparsers)`` adds the subcommand to the ``apmpo`` CLI (listed in
``apmpo.cli.SUBCOMMAND_MODULES``). See :mod:`apmpo.study.runner` for what a study does.
On SIGTERM / SIGINT the study checkpoints its running trainings and exits with status
75 and the command that resumes it (:mod:`apmpo.preemption`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from apmpo.preemption import EXIT_PREEMPTED, Preempted, StopRequest
from apmpo.study.config import load_study_config, restrict
from apmpo.study.runner import run_study

__all__ = ["register", "run"]

_DESCRIPTION = """\
Run every arm of a study config (APMPO, GRPO, DAPO, GMPO and APMPO's ablations) with paired
seeds, each as an ordinary training run under OUTPUT_DIR/runs, then write the results table
(mean and 95% t-interval over seeds, paired differences vs the baseline), the curves (PNG),
CSV files and results.md. Re-running the same command skips finished runs and resumes
interrupted ones.
"""

_EPILOG = """\
examples:
  apmpo study study_tiny.yaml --quick            # minutes: the small variant of setting (a)
  apmpo study study_tiny.yaml --jobs 2           # setting (a): tiny transformer from scratch
  apmpo study study_smollm2.yaml --jobs 1        # setting (b): SmolLM2-135M-Instruct (hours on CPU)
  apmpo study study_tiny.yaml --dry-run          # the plan and each run's status
  apmpo study study_tiny.yaml --report-only      # rebuild the report from finished runs
  apmpo study study_tiny.yaml --target-mde 2 --seed-budget 40   # pilot = configured seeds, then plan and train more
  apmpo study my_study.yaml --arms grpo,apmpo --seeds 0,1,2 optim.lr=2e-4
"""


def _int_csv(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``study`` to the ``apmpo`` parser."""
    p = subparsers.add_parser(
        "study",
        help="compare APMPO with GRPO / DAPO / GMPO and its ablations over paired seeds",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config", metavar="CONFIG", help="study YAML file, or a packaged one (study_tiny.yaml, study_smollm2.yaml)"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="trainer overrides applied to every run (anywhere after CONFIG), e.g. steps=50 optim.lr=2e-4",
    )
    p.add_argument("--quick", action="store_true", help="apply the config's quick section (a small, fast variant)")
    p.add_argument("--jobs", type=int, help="runs trained at once (default: the config's)")
    p.add_argument("--arms", type=_str_csv, metavar="A,B,...", help="only these arms (the baseline must be among them)")
    p.add_argument("--seeds", type=_int_csv, metavar="S,...", help="seeds of every arm (replaces the config's)")
    p.add_argument("--ablation-seeds", type=_int_csv, metavar="S,...", help="seeds of the ablation arms")
    p.add_argument("--output-dir", help="where runs, logs and the warm-up go (default: the config's)")
    p.add_argument("--docs-dir", help="where tables and figures go (default: the config's report.docs_dir)")
    p.add_argument("--results-md", help="the Markdown report to write (default: the config's report.results_md)")
    p.add_argument("--no-results-md", action="store_true", help="do not write the Markdown report")
    p.add_argument(
        "--target-mde",
        type=float,
        metavar="POINTS",
        help="plan the seeds per arm from the pilot (the configured seeds, trained first) so that every comparison of "
        "interest detects this many points of held-out accuracy at the config's power (default 80%%); the plan is "
        "printed, then the added seeds are trained",
    )
    p.add_argument("--seed-budget", type=int, metavar="N", help="with --target-mde: at most N seeds per arm")
    p.add_argument("--report-only", action="store_true", help="train nothing; report on the finished runs")
    p.add_argument("--dry-run", action="store_true", help="print the plan and each run's status; write nothing")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``apmpo study``."""
    full = load_study_config(args.config)
    study = load_study_config(args.config, quick=True) if args.quick else full
    study = restrict(
        study,
        arms=args.arms,
        seeds=args.seeds,
        ablation_seeds=args.ablation_seeds,
        output_dir=args.output_dir,
        overrides=args.overrides,
        jobs=args.jobs,
        target_mde=args.target_mde,
        seed_budget=args.seed_budget,
    )
    if args.docs_dir:
        study.report.docs_dir = args.docs_dir
    if args.results_md:
        study.report.results_md = args.results_md
    if args.no_results_md:
        study.report.results_md = None
    command = (
        shlex.join(["apmpo", "study", *sys.argv[2:]])
        if sys.argv[1:2] == ["study"]
        else shlex.join(["apmpo", "study", args.config, *(["--quick"] if args.quick else []), *args.overrides])
    )
    stop = StopRequest(
        notice="{signal} received: the running trainings stop after their current step (send it again to stop at once)"
    )
    try:
        with stop.installed():
            result = run_study(
                study, command=command, report_only=args.report_only, dry_run=args.dry_run, full_study=full, stop=stop
            )
    except Preempted as exc:
        print(f"apmpo study: {exc}; resume by running the same command again: {command}", file=sys.stderr)
        return EXIT_PREEMPTED
    if not args.dry_run:
        print(
            f"study {study.name}: {len(result.runs)} runs reported ({len(result.trained)} trained now, "
            f"{len(result.skipped)} reused) in {result.wall_seconds / 60:.1f} min"
        )
    return 0

"""``apmpo study``: APMPO vs GRPO / DAPO / GMPO and the paper's ablations, over paired seeds.

The paper (arXiv 2605.04066) makes comparative claims: APMPO beats GRPO, DAPO and GMPO;
PMPO (the adaptive power mean) gives most of the gain and FAC (the adaptive clip) the
rest; entropy under APMPO decays slower than under GRPO and faster than under GMPO. A
study checks such claims on a given model and task with one command, from a YAML file
(``apmpo/configs/study_*.yaml``; fields documented on :class:`StudyConfig`):

1. the base training config (a trainer YAML and/or an inline ``train:`` mapping, plus
   ``section.field=value`` overrides) is what every run shares;
2. optionally a supervised warm-up (:mod:`apmpo.study.warmup`) trains a model from
   scratch to moderate accuracy, once; every run starts from the saved directory;
3. every arm (its own overrides: ``algorithm.name=grpo``, an APMPO ablation such as
   ``algorithm.params.clip_schedule=fixed``, ...) runs once per seed, each run an
   ordinary trainer run (:func:`apmpo.trainer.train`) in ``<output_dir>/runs/<arm>-seed<s>``
   with its log in ``<output_dir>/logs``. Runs go through a pool of ``jobs`` worker
   processes (one torch thread each by default), or in this process with ``jobs = 1``;
4. from the run directories' ``metrics.jsonl`` the report (:mod:`apmpo.study.report`)
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
import ctypes
import datetime as _dt
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from apmpo.preemption import Preempted, StepAbandoned, StopRequest
from apmpo.provenance import git_state, machine_info
from apmpo.study.config import StudyConfig, StudyError
from apmpo.study.plan import SeedPlan, SeedPlanError, apply_seed_plan, plan_seeds
from apmpo.study.report import compute_tables, write_report
from apmpo.study.runs import (
    PlannedRun,
    StudyResult,
    base_train_config,
    collect_runs,
    plan_runs,
    read_invocations,
    read_warmup,
    record_invocation,
    run_status,
    warmup_dir,
)
from apmpo.study.warmup import WarmupConfig, WarmupResult, ensure_warmup
from apmpo.trainer.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    validate_config,
)
from apmpo.trainer.loop import train

__all__ = ["run_study"]


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
            _report_done(done, futures, report)
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


def _report_done(done: set[cf.Future], futures: dict[cf.Future, dict], report: Callable[[dict], None]) -> None:
    """Report the outcome of each finished (not cancelled) future; a worker that died is a failed run."""
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


# --------------------------------------------------------------------------- the study


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

    With ``study.power.target_mde`` the configured seeds are the pilot: they are trained
    first, the seeds per arm are planned from their paired spread
    (:mod:`apmpo.study.plan`, the plan is printed), the added seeds are trained, and the
    report covers all of them.

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
    full_study = full_study or study
    model_dir = warmup_dir(study) / "model" if study.warmup else None
    plan = plan_runs(study, model_dir=model_dir)
    planning = study.power.target_mde is not None
    log(
        f"study {study.name}: {len(study.arms)} arms, {len(plan)} {'pilot ' if planning else ''}runs, "
        f"output {study.output_dir}"
    )
    if dry_run:
        _log_dry_run(study, plan, model_dir, log)
        return StudyResult([], [], [], [r.name for r in plan], None, time.perf_counter() - t0)
    command = command or _default_command()
    started, machine = _dt.datetime.now().isoformat(timespec="seconds"), machine_info()
    warmup = None
    if study.warmup is not None:
        if report_only:
            warmup = read_warmup(warmup_dir(study))
        else:
            warmup = _warm_up(study.warmup, study, log, stop)
    statuses = {run.name: run_status(run, study.warmup is not None) for run in plan}
    trained: list[str] = []
    interrupted = (0, 0)
    failures: list[dict] = []
    if not report_only:
        trained, failures, interrupted = _train_pending(study, plan, statuses, log, stop)
    seed_plan = None
    if planning and not failures and not stop.requested:
        seed_plan = _pilot_plan(study, plan, report_only, log)
    if seed_plan is not None:
        study, full_study = apply_seed_plan(study, seed_plan), apply_seed_plan(full_study, seed_plan)
        plan = plan_runs(study, model_dir=model_dir)
        statuses.update(
            {run.name: run_status(run, study.warmup is not None) for run in plan if run.name not in statuses}
        )
        if not report_only:
            more, failures, interrupted = _train_pending(
                study, [r for r in plan if r.name not in trained], statuses, log, stop
            )
            trained += more
    if not report_only and (trained or failures or (warmup is not None and not warmup.reused)):
        record_invocation(
            study,
            {
                "command": command,
                "started": started,
                "wall_seconds": time.perf_counter() - t0,
                "trained": len(trained),
                "failed": len(failures),
                "reused": sum(1 for r in plan if statuses[r.name] == "done"),
                "warmup_trained": warmup is not None and not warmup.reused,
                "jobs": study.jobs,
                "threads_per_run": study.threads_per_run,
                "machine": machine,
                "code": git_state(),
            },
        )
    if stop.requested:
        checkpointed, not_started = interrupted
        raise Preempted(
            f"stopped by {stop.signal_name}: {len(trained)} runs finished now, {checkpointed} checkpointed at "
            f"their last completed step, {not_started} not started" + (f", {len(failures)} failed" if failures else "")
        )
    if failures:
        lines = [
            f"{o['name']}: {o['error']} (log: {Path(study.output_dir) / 'logs' / (o['name'] + '.log')})"
            for o in failures
        ]
        raise StudyError(
            f"{len(failures)} runs failed (finished runs are kept; rerun to retry):\n  " + "\n  ".join(lines)
        )
    records, missing = collect_runs(plan)
    skipped = [r.name for r in plan if statuses[r.name] == "done"]
    result = StudyResult(records, trained, skipped, missing, warmup, time.perf_counter() - t0, seed_plan=seed_plan)
    if report:
        if not records:
            raise StudyError(f"{study.output_dir}: no finished runs to report on")
        full_plan = plan_runs(full_study, model_dir="warmup-model" if full_study.warmup else None)
        result.report_files = write_report(
            study,
            result,
            command=command,
            full_study=full_study,
            full_plan=full_plan,
            planned=plan,
            invocations=read_invocations(study),
            report_only=report_only,
        )
        for path in result.report_files:
            log(f"wrote {path}")
    result.wall_seconds = time.perf_counter() - t0
    return result


def _warm_up(config: WarmupConfig, study: StudyConfig, log: Callable[[str], None], stop: StopRequest) -> WarmupResult:
    """The study's warm-up (trained, or reused when saved); a stop signal abandons it (it is saved only when finished)."""
    try:
        with stop.abandonable():
            return ensure_warmup(config, base_train_config(study), warmup_dir(study), log=log)
    except StepAbandoned:
        raise Preempted(
            f"stopped by {stop.signal_name} during the warm-up, which starts again when the study is run again"
        ) from None


def _log_dry_run(
    study: StudyConfig, plan: list[PlannedRun], model_dir: Path | None, log: Callable[[str], None]
) -> None:
    """Each planned run's status; with seed planning, the plan from the pilot when it is finished, and the added runs."""
    for run in plan:
        log(f"  {run.name:28s} {run_status(run, study.warmup is not None)}")
    if study.power.target_mde is None:
        return
    try:
        seed_plan = _seed_plan(study, plan)
    except StudyError as exc:
        log(f"seed plan: not yet ({exc})")
        return
    for line in seed_plan.lines():
        log(line)
    pilot = {r.name for r in plan}
    for run in plan_runs(apply_seed_plan(study, seed_plan), model_dir=model_dir):
        if run.name not in pilot:
            log(f"  {run.name:28s} {run_status(run, study.warmup is not None)}")


def _train_pending(
    study: StudyConfig,
    plan: list[PlannedRun],
    statuses: dict[str, str],
    log: Callable[[str], None],
    stop: StopRequest,
) -> tuple[list[str], list[dict], tuple[int, int]]:
    """Train the runs of ``plan`` that are not done; returns (names trained, failed outcomes, (runs checkpointed by
    a stop request, runs not started because of one)).

    After a stop request nothing more starts; a run stopped by one is neither trained nor failed."""
    for run in plan:
        try:
            validate_config(run.config)
        except ConfigError as exc:
            raise StudyError(f"arms.{run.arm} (seed {run.seed}): {exc}") from None
    pending = [run for run in plan if statuses[run.name] != "done"]
    log(f"{len(plan) - len(pending)} runs already finished, {len(pending)} to train with {study.jobs} job(s)")
    for run in pending:
        if statuses[run.name] == "restart":  # interrupted before its first checkpoint: nothing to keep
            log(f"{run.name}: incomplete and without a checkpoint, starting it again")
            shutil.rmtree(run.run_dir)
    outcomes = _execute([_payload(run, statuses[run.name], study) for run in pending], study.jobs, log, stop)
    failed = [o for o in outcomes if not o["ok"] and not o.get("preempted")]
    checkpointed = sum(1 for o in outcomes if o.get("preempted") and o["started"])
    started = sum(1 for o in outcomes if o.get("started", True))
    return [o["name"] for o in outcomes if o["ok"]], failed, (checkpointed, len(pending) - started)


def _pilot_plan(
    study: StudyConfig, pilot: list[PlannedRun], report_only: bool, log: Callable[[str], None]
) -> SeedPlan | None:
    """The seed plan from the finished pilot, printed; with ``report_only`` None (and said) when it is not possible."""
    try:
        seed_plan = _seed_plan(study, pilot)
    except StudyError as exc:
        if not report_only:
            raise
        log(f"seed plan: not possible yet ({exc}); reporting on the pilot")
        return None
    for line in seed_plan.lines():
        log(line)
    return seed_plan


def _seed_plan(study: StudyConfig, pilot: list[PlannedRun]) -> SeedPlan:
    """The seed plan from the finished pilot runs (StudyError when the pilot cannot size the study)."""
    records, missing = collect_runs(pilot)
    if missing:
        raise StudyError(f"the pilot is not finished ({len(missing)} of {len(pilot)} runs missing)")
    target = study.power.target_mde
    if target is None:
        raise StudyError("power.target_mde: no target to plan the seeds for")
    try:
        return plan_seeds(
            study,
            compute_tables(study, records),
            target_mde=target,
            seed_budget=study.power.seed_budget,
            power=study.power.power,
        )
    except SeedPlanError as exc:
        raise StudyError(f"seed plan: {exc}") from None


def _default_command() -> str:
    return (
        shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        if sys.argv and sys.argv[0]
        else "apmpo.study.runner.run_study(...)"
    )

"""Study workers never outlive the study process (no orphaned training after a kill); a SIGTERM to the study
checkpoints its running trainings, and the study resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apmpo.preemption import Preempted, StopRequest
from apmpo.study import warmup as warmup_module
from apmpo.study.config import load_study_config
from apmpo.study.runner import run_study
from apmpo.study.runs import plan_runs
from apmpo.trainer.checkpoint import latest_checkpoint
from apmpo.trainer.config import apply_overrides
from apmpo.trainer.loop import train
from apmpo.trainer.tracking import read_jsonl

from .conftest import toy_study, write_study

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")

PARENT = textwrap.dedent("""
    import concurrent.futures as cf, multiprocessing, os, sys, time
    from apmpo.study.runner import _die_with_parent

    def sleeper(_):
        print(os.getpid(), flush=True)
        time.sleep(60)

    if __name__ == "__main__":
        pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_die_with_parent, initargs=(os.getpid(),))
        pool.submit(sleeper, 0)
        time.sleep(60)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_worker_dies_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)  # no cleanup code runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker kept running after its study process was killed"
    finally:
        if parent.poll() is None:
            parent.kill()


# --------------------------------------------------------------------------- SIGTERM to `apmpo study`

TIMING = {"step_seconds", "rollout_seconds", "generation_seconds", "train_seconds", "tokens_per_s", "train_tokens_per_s",
          "gen_tokens_per_s", "peak_rss_gb", "seconds"}


def _stoppable_study(tmp_path: Path, jobs: int) -> Path:
    """Two arms x one seed of 30 short steps, no warm-up or evaluation, checkpoints kept (to compare weights)."""
    train = toy_study(tmp_path)["train"]
    train = {**train, "steps": 30, "eval": {"at_start": False, "at_end": False}, "checkpoint": {"every": 0}}
    return write_study(tmp_path, train=train, warmup=None, seeds=[0], jobs=jobs, keep_checkpoints=True,
                       arms={"grpo": ["algorithm.name=grpo"], "apmpo": ["algorithm.name=apmpo"]})


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run_dir / "metrics.jsonl")]


def _logged_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in _records(run_dir) if r.get("kind") == "train"]


def _assert_like_uninterrupted(study_path: Path, tmp_path: Path) -> None:
    """Every run of the resumed study equals, metric for metric and weight for weight, the same run trained straight."""
    for run in plan_runs(load_study_config(study_path)):
        config = apply_overrides(run.config, [f"logging.output_dir={tmp_path / 'straight'}"])
        straight = train(config).run_dir
        assert _records(run.run_dir) == _records(straight), run.name
        a = load_file(str(latest_checkpoint(run.run_dir) / "model.safetensors"))
        b = load_file(str(latest_checkpoint(straight) / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), run.name


@pytest.mark.parametrize("jobs", [2, 1])
def test_sigterm_checkpoints_the_running_trainings_and_the_study_resumes(tmp_path, jobs):
    """A real SIGTERM to `apmpo study` once a run has logged a step: exit 75, every started run checkpointed at its
    last logged step, no worker left; the same command then finishes the study exactly as an uninterrupted one."""
    study_path = _stoppable_study(tmp_path, jobs)
    runs = tmp_path / "out" / "runs"
    command = [sys.executable, "-m", "apmpo", "study", str(study_path), "--no-results-md"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    study = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not any(_logged_steps(d) for d in runs.glob("*") if d.is_dir()):
        assert time.monotonic() < deadline and study.poll() is None, "no training step was logged"
        time.sleep(0.02)
    workers = _children(study.pid)
    study.send_signal(signal.SIGTERM)
    out, err = study.communicate(timeout=180)
    assert study.returncode == 75, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("apmpo study: stopped by SIGTERM: 0 runs finished now, ") and "checkpointed" in last
    assert last.endswith(f"resume by running the same command again: apmpo study {study_path} --no-results-md")
    assert "Traceback" not in err
    deadline = time.monotonic() + 10  # the exiting study's children (workers, multiprocessing's resource tracker)
    while [pid for pid in workers if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [_cmdline(pid) for pid in workers if _alive(pid)], "a child outlived the stopped study"
    started = [d for d in runs.iterdir() if _logged_steps(d)]
    assert started
    for run_dir in started:
        steps = _logged_steps(run_dir)
        assert steps == list(range(1, len(steps) + 1)) and len(steps) < 30
        assert latest_checkpoint(run_dir).name == f"step-{steps[-1]:06d}", run_dir.name
        assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    for run_dir in runs.iterdir():
        assert _logged_steps(run_dir) == list(range(1, 31))
    _assert_like_uninterrupted(study_path, tmp_path)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return str(pid)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def test_a_signal_during_the_warm_up_abandons_it_and_the_study_starts_it_again(tmp_path, monkeypatch):
    study = load_study_config(write_study(tmp_path, seeds=[0], arms={"grpo": ["algorithm.name=grpo"]}))
    real = warmup_module.run_warmup
    seen = []

    def interrupted(*args, **kwargs):
        seen.append("started")
        signal.raise_signal(signal.SIGTERM)  # arrives while the warm-up trains
        return real(*args, **kwargs)

    monkeypatch.setattr(warmup_module, "run_warmup", interrupted)
    with StopRequest(notice=None).installed() as stop, pytest.raises(Preempted, match="during the warm-up"):
        run_study(study, report=False, log=lambda _: None, stop=stop)
    assert seen == ["started"]
    out = tmp_path / "out"
    assert not (out / "warmup" / "model").exists() and not (out / "runs").exists()
    monkeypatch.setattr(warmup_module, "run_warmup", real)
    result = run_study(study, report=False, log=lambda _: None)
    assert result.trained == ["grpo-seed0"] and not result.warmup.reused

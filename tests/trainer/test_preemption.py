"""Preemption: a stop signal checkpoints the last completed step, exits 75, and --resume continues bit for bit."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apmpo.preemption import HardStop, Preempted, StopRequest
from apmpo.trainer import checkpoint as ckpt
from apmpo.trainer import step as step_module
from apmpo.trainer.checkpoint import latest_checkpoint, list_checkpoints
from apmpo.trainer.loop import train
from apmpo.trainer.tracking import read_jsonl

from .conftest import tiny_config

pytestmark = pytest.mark.skipif(not hasattr(signal, "raise_signal") or sys.platform == "win32",
                                reason="needs POSIX signals")

TIMING = {"step_seconds", "rollout_seconds", "generation_seconds", "train_seconds", "tokens_per_s", "train_tokens_per_s",
          "gen_tokens_per_s", "peak_rss_gb", "seconds"}
SETTINGS = ["steps=5", "optim.lr_schedule=cosine", "optim.warmup_steps=2", "algorithm.mini_batches=2",
            "algorithm.epochs=2", "algorithm.beta=0.01", "logging.sample_every=1"]


def digit_fraction(completions, **columns):
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run_dir / "metrics.jsonl")]


def _weights(run_dir: Path) -> dict:
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    assert _records(a) == _records(b)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_jsonl(a / "samples.jsonl") == read_jsonl(b / "samples.jsonl")


def _no_leftovers(run_dir: Path) -> None:
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one is compared with (eval at start and end included)."""
    root = tmp_path_factory.mktemp("straight")
    return train(tiny_config(root, *SETTINGS, "eval.at_start=true", "eval.at_end=true"),
                 reward_functions={"digits": digit_fraction}).run_dir


def _interrupted(tmp_path, monkeypatch, *, reward_call=None, loss_call=None, times=1, extra=(), signum=signal.SIGTERM):
    """Train with a stop request installed, raising SIGTERM ``times`` times in the ``reward_call``-th call of the
    reward (call 1 is the evaluation at step 0, call k + 1 the scoring of step k) or in the ``loss_call``-th call of
    the objective (4 per step: 2 epochs x 2 mini-batches of one micro-batch)."""
    calls = {"reward": 0, "loss": 0}

    def raise_at(kind, wanted):
        calls[kind] += 1
        if calls[kind] == wanted:
            for _ in range(times):
                signal.raise_signal(signum)

    def reward(completions, **columns):
        raise_at("reward", reward_call)
        return digit_fraction(completions)

    real = step_module.policy_loss

    def loss(*args, **kwargs):
        raise_at("loss", loss_call)
        return real(*args, **kwargs)

    monkeypatch.setattr(step_module, "policy_loss", loss)
    config = tiny_config(tmp_path, *SETTINGS, "eval.at_start=true", "eval.at_end=true", *extra)
    try:
        with StopRequest(notice=None).installed() as stop:
            train(config, reward_functions={"digits": reward}, stop=stop)
    finally:
        monkeypatch.setattr(step_module, "policy_loss", real)


def _resume(tmp_path):
    config = tiny_config(tmp_path, *SETTINGS, "eval.at_start=true", "eval.at_end=true")
    return train(config, resume=True, reward_functions={"digits": digit_fraction})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_sampling_abandons_the_step_and_resume_is_bit_exact(tmp_path, monkeypatch, straight, signum):
    name = signal.Signals(signum).name
    with pytest.raises(Preempted, match=rf"stopped by {name} after step 2 of 5; checkpoint .*step-000002"):
        _interrupted(tmp_path, monkeypatch, reward_call=4, signum=signum)  # while scoring step 3
    run_dir = tmp_path / "run"
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-000002"]  # checkpoint.every = 0: written by the stop
    assert (latest_checkpoint(run_dir) / "trainer_state.pt").is_file()
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1, 2]
    _no_leftovers(run_dir)
    _resume(tmp_path)
    _assert_same_run(straight, run_dir)


def test_a_signal_during_the_updates_finishes_the_step(tmp_path, monkeypatch, straight):
    with pytest.raises(Preempted, match=r"after step 3 of 5; checkpoint .*step-000003"):
        _interrupted(tmp_path, monkeypatch, loss_call=10)  # the second update of step 3
    run_dir = tmp_path / "run"
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-000003"]
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]  # step 3 finished and logged
    _resume(tmp_path)
    _assert_same_run(straight, run_dir)


def test_a_stop_before_the_first_step_checkpoints_step_0(tmp_path, straight):
    config = tiny_config(tmp_path, *SETTINGS, "eval.at_start=true", "eval.at_end=true")
    stop = StopRequest(notice=None)
    stop.request(signal.SIGTERM)  # e.g. during the evaluation before training
    with pytest.raises(Preempted, match="after step 0 of 5"):
        train(config, reward_functions={"digits": digit_fraction}, stop=stop)
    run_dir = tmp_path / "run"
    assert latest_checkpoint(run_dir).name == "step-000000"
    _resume(tmp_path)
    _assert_same_run(straight, run_dir)  # the evaluation at step 0 is logged once


def test_a_second_signal_stops_at_once_and_the_run_resumes(tmp_path, monkeypatch, straight):
    with pytest.raises(HardStop) as caught:
        _interrupted(tmp_path, monkeypatch, loss_call=14, times=2, extra=["checkpoint.every=1"])  # in step 4
    assert caught.value.exit_code == 143
    run_dir = tmp_path / "run"
    assert latest_checkpoint(run_dir).name == "step-000003"
    _no_leftovers(run_dir)
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]
    _resume(tmp_path)
    _assert_same_run(straight, run_dir)


def test_a_second_signal_during_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch, straight):
    real_save = ckpt.torch.save
    saves = {"n": 0}

    def save(obj, path, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 3:  # writing the step-3 checkpoint: first signal, then a second one
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save)
    with pytest.raises(HardStop):
        _interrupted(tmp_path, monkeypatch, extra=["checkpoint.every=1"])
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    run_dir = tmp_path / "run"
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-000001", "step-000002"]
    _no_leftovers(run_dir)  # the half-written step-3 directory was removed while unwinding
    _resume(tmp_path)
    _assert_same_run(straight, run_dir)


# --------------------------------------------------------------------------- a real signal to `apmpo train`

CLI_SETTINGS = ["steps=30", "checkpoint.every=0", "eval.at_start=false", "eval.at_end=false", "logging.sample_every=1",
                "algorithm.mini_batches=2", "optim.lr_schedule=cosine",
                # the tiny model never solves a problem: DAPO's length shaping gives rewards that differ, so it trains
                "algorithm.overlong_buffer=4", "algorithm.overlong_penalty=1", "algorithm.reward_range=[-1,1]"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "apmpo", *args]


def _wait_for_first_step(process: subprocess.Popen, metrics: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(r.get("kind") == "train" for r in read_jsonl(metrics)):
            return
        time.sleep(0.01)
    raise AssertionError(f"no step was logged (exit status {process.poll()})")


@pytest.fixture(scope="module")
def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.fixture(scope="module")
def cli_straight(tmp_path_factory, env):
    """`apmpo train` with CLI_SETTINGS, uninterrupted (checkpoint frequency does not change a run's numbers)."""
    root = tmp_path_factory.mktemp("cli")
    subprocess.run(_cli("train", "tiny_test.yaml", f"logging.output_dir={root}", *CLI_SETTINGS,
                        "logging.run_name=straight"), check=True, env=env, capture_output=True)
    records = [r for r in read_jsonl(root / "straight" / "metrics.jsonl") if r.get("kind") == "train"]
    assert sum(r["trained_rows"] > 0 and r["grad_norm"] > 0 for r in records) > len(records) // 2  # it trains
    return root / "straight"


def test_sigterm_to_apmpo_train_then_resume_is_bit_exact(tmp_path, env, cli_straight):
    """SIGTERM once the first step is logged: exit 75, one line with the resume command, which continues bit for bit."""
    args = ["train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", *CLI_SETTINGS]
    process = subprocess.Popen(_cli(*args, "logging.run_name=run"), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "run"
    _wait_for_first_step(process, run_dir / "metrics.jsonl")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 75, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("apmpo: stopped by SIGTERM after step ") and " of 30; checkpoint " in last
    assert "Traceback" not in err
    command = shlex.split(last.split("resume with: ", 1)[1])
    assert command[:2] == ["apmpo", "train"] and command[-2:] == ["--resume", str(run_dir)]
    step = int(latest_checkpoint(run_dir).name.split("-")[1])
    assert 1 <= step < 30 and f"after step {step} of 30" in last
    _no_leftovers(run_dir)
    subprocess.run(_cli(*command[1:]), check=True, env=env, capture_output=True)
    _assert_same_run(cli_straight, run_dir)


def test_sigkill_to_apmpo_train_then_resume_is_bit_exact(tmp_path, env, cli_straight):
    """SIGKILL (no handler runs) once two steps are logged: the run directory holds complete checkpoints only,
    and --resume continues from the newest bit for bit (a line torn by the kill is dropped)."""
    args = ["train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=run", *CLI_SETTINGS,
            "checkpoint.every=1"]
    process = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "run"
    _wait(lambda: len([r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "train"]) >= 2
          or process.poll() is not None, "two logged steps")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None and (checkpoint / "trainer_state.pt").is_file()
    done = subprocess.run(_cli(*args, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same_run(cli_straight, run_dir)


def _stderr_lines(process: subprocess.Popen) -> list[str]:
    """Collect the process's stderr lines in a thread (so the test can wait for one while it runs)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True).start()
    return lines


def _wait(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_two_sigterms_stop_apmpo_train_at_once_without_corruption(tmp_path, env):
    """The first SIGTERM lands in a step's (slowed) updates; a second one, sent once the first was seen, exits 143."""
    marker = tmp_path / "in-update"
    args = ["train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=run", *CLI_SETTINGS,
            "steps=6", "checkpoint.every=1"]
    slow_env = {**env, "APMPO_TEST_MARKER": str(marker), "APMPO_TEST_SLEEP": "0.4"}
    process = subprocess.Popen([sys.executable, "-m", "tests.trainer.slow_cli", *args], env=slow_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    lines = _stderr_lines(process)
    run_dir = tmp_path / "run"
    _wait(lambda: any(r.get("kind") == "train" for r in read_jsonl(run_dir / "metrics.jsonl")), "the first step")
    marker.unlink(missing_ok=True)
    _wait(marker.exists, "the updates of the next step")
    process.send_signal(signal.SIGTERM)
    _wait(lambda: any("SIGTERM received" in line for line in lines), "the first signal's notice")
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    err = "".join(lines)
    assert process.returncode == 143, err
    assert "apmpo: stopped at once by a second SIGTERM" in err and "Traceback" not in err
    _no_leftovers(run_dir)
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert len(steps) == len((run_dir / "metrics.jsonl").read_text().splitlines())  # no torn line
    assert latest_checkpoint(run_dir).name == f"step-{steps[-1]:06d}"  # the interrupted step left nothing
    done = subprocess.run(_cli(*args, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, 7))

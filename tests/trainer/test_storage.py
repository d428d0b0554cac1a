"""A full disk during training: the run stops naming the path and the space needed; nothing written before is lost."""

from __future__ import annotations

import errno
import os

import pytest
import torch
import transformers.modeling_utils as modeling_utils
from safetensors import SafetensorError
from safetensors.torch import load_file

import apmpo.io as io_module
from apmpo.cli import main
from apmpo.io import StorageError
from apmpo.trainer.checkpoint import latest_checkpoint, list_checkpoints
from apmpo.trainer.loop import train
from apmpo.trainer.tracking import MetricsWriter, read_jsonl
from tests.faults import FailingOs

from .conftest import tiny_config

TIMING = {"step_seconds", "rollout_seconds", "generation_seconds", "train_seconds", "tokens_per_s", "train_tokens_per_s",
          "gen_tokens_per_s", "peak_rss_gb", "seconds"}
SETTINGS = ["steps=4", "checkpoint.every=1", "checkpoint.keep_last=4", "algorithm.mini_batches=2"]


def digit_fraction(completions, **columns):
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


REWARD = {"digits": digit_fraction}


def _records(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run_dir / "metrics.jsonl")]


def _weights(run_dir):
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def _full_disk_at_the_third_checkpoint(monkeypatch):
    real = modeling_utils.safe_save_file
    saves = {"n": 0}

    def save(*args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 3:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "safe_save_file", save)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return train(tiny_config(tmp_path_factory.mktemp("straight"), *SETTINGS), reward_functions=REWARD).run_dir


def test_a_full_disk_at_a_checkpoint_stops_the_run_and_it_resumes(tmp_path, monkeypatch, straight):
    with monkeypatch.context() as patched:
        _full_disk_at_the_third_checkpoint(patched)
        with pytest.raises(StorageError) as caught:
            train(tiny_config(tmp_path, *SETTINGS), reward_functions=REWARD)
    run_dir = tmp_path / "run"
    text = str(caught.value)
    assert f"writing the checkpoint {run_dir / 'checkpoints' / 'step-000003'} failed: the disk is full" in text
    assert f"The previous checkpoint {run_dir / 'checkpoints' / 'step-000002'} is intact" in text
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-000001", "step-000002"]
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    train(tiny_config(tmp_path, *SETTINGS), resume=True, reward_functions=REWARD)
    assert _records(run_dir) == _records(straight)  # step 3's log line was replaced, not duplicated
    wa, wb = _weights(run_dir), _weights(straight)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
def test_a_full_disk_on_the_metrics_log_keeps_every_line_before(tmp_path, monkeypatch, straight, code):
    with monkeypatch.context() as patched:
        patched.setattr(io_module, "os", FailingOs("metrics.jsonl", code, skip=2))  # the third append fails mid-line
        with pytest.raises(StorageError) as caught:
            train(tiny_config(tmp_path, *SETTINGS), reward_functions=REWARD)
    run_dir = tmp_path / "run"
    assert f"appending to {run_dir / 'metrics.jsonl'} failed" in str(caught.value)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2] and len(lines) == 2  # no torn line
    assert latest_checkpoint(run_dir).name == "step-000002"
    train(tiny_config(tmp_path, *SETTINGS), resume=True, reward_functions=REWARD)
    assert _records(run_dir) == _records(straight)


def test_apmpo_train_on_a_full_disk_exits_74_with_one_message(tmp_path, monkeypatch, capsys):
    _full_disk_at_the_third_checkpoint(monkeypatch)
    status = main(["train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=run", "steps=4",
                   "checkpoint.every=1", "eval.at_start=false", "eval.at_end=false"])
    err = capsys.readouterr().err
    assert status == 74, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"apmpo: writing the checkpoint {tmp_path / 'run' / 'checkpoints' / 'step-000003'} failed: "
                           "the disk is full (ENOSPC") and "it needs about" in line and "resume from it with --resume" in line
    assert "Traceback" not in err
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "step-000002")


def test_a_torn_or_corrupt_metrics_line_is_skipped_and_dropped_on_resume(tmp_path):
    """A kill mid-append (before appends were all or nothing, or a copy of a live file) leaves a torn last line:
    readers skip it, and --resume rewrites the log without it (and without the steps after the checkpoint)."""
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"kind": "train", "step": 1}\n{"kind": "tr\n{"kind": "train", "step": 2}\n{"kind": "train", "st')
    assert [r["step"] for r in read_jsonl(log)] == [1, 2]
    MetricsWriter(tmp_path, tensorboard=False, wandb=False, wandb_project="", config={}, run_name="r", resume_step=1)
    assert log.read_text() == '{"kind": "train", "step": 1}\n'

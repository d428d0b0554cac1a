"""APMPOTrainer with 2 CPU processes (torchrun, gloo): the batch reward statistics cross processes.

Three launches of tests/integrations/trl_worker.py on a tiny random Llama saved to a
temporary folder: 2 processes sampling with TRL's own generation; 2 processes and 1
process on the same global batch with fixed completions (TRL's ``rollout_func``; why:
the worker's docstring). Checked: mu_R and sigma_R reaching every loss call on both
processes are the statistics of the whole generation batch (what both reward functions
saw together), the logged p and eps_ada are the paper's formulas of them, and the
2-process run ends with the 1-process run's weights (float32 rounding), after an
off-policy second update whose clip acts.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import apmpo
from apmpo.models import tiny_model

pytest.importorskip("trl", reason="TRL is not installed; to run: pip install 'apmpo[trl]' (trl==1.16.0)")

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("trl_worker.py")


def _launch(model: str, out: Path, processes: int, rollout: str) -> Path:
    per_device = 8 // processes                                        # the same global batch either way
    args = [str(WORKER), "--model", model, "--out", str(out), "--per-device", str(per_device), "--rollout", rollout]
    if processes > 1:  # --standalone: torchrun picks a free port for its rendezvous itself
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   *args]
    else:
        command = [sys.executable, *args]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # its own session, so that a launch that overruns is ended with all its workers (torchrun's children)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{out.name}: no result in 420 s\n{stdout[-3000:]}\n{stderr[-6000:]}")
    assert process.returncode == 0, stdout[-3000:] + stderr[-6000:]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl2")
    model, tokenizer = tiny_model(seed=0)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    model_dir = str(root / "model")
    return {
        "sampled": _launch(model_dir, root / "sampled", 2, "sample"),
        "fixed2": _launch(model_dir, root / "fixed2", 2, "fixed"),
        "fixed1": _launch(model_dir, root / "fixed1", 1, "fixed"),
        "model": root / "model",
    }


def _records(run: Path, name: str, rank: int) -> list[dict]:
    return [json.loads(line) for line in (run / f"{name}-rank{rank}.jsonl").read_text().splitlines()]


def _check_whole_batch_statistics(run: Path, ranks: int) -> tuple[float, float]:
    seen = [_records(run, "rewards", r) for r in range(ranks)]
    assert all(len(calls) == 1 for calls in seen)                      # one generation batch: max_steps 2, mu 2
    rewards = torch.tensor([x for calls in seen for x in calls[0]["rewards"]], dtype=torch.float64)
    assert len(rewards) == 16                                          # 4 prompts x 4 samples, over all processes
    mu, sigma = (float(v) for v in apmpo.reward_statistics(rewards))
    for rank in range(ranks):
        calls = _records(run, "loss", rank)
        assert len(calls) == 4 and sum(c["rows"] for c in calls) == 2 * 16 // ranks  # 2 updates x 2 micro-batches
        for call in calls:
            assert (call["mean"], call["std"]) == (pytest.approx(mu, abs=1e-6), pytest.approx(sigma, abs=1e-6))
    logs = [h for h in json.loads((run / "log_history.json").read_text()) if "apmpo/p" in h]
    assert len(logs) == 2
    for log in logs:
        assert log["apmpo/reward_mean"] == pytest.approx(mu, abs=1e-6)
        assert log["apmpo/reward_std"] == pytest.approx(sigma, abs=1e-6)
        assert log["apmpo/p"] == pytest.approx(math.exp(-0.8 * mu), rel=1e-5)
        assert log["apmpo/eps_high"] == pytest.approx(0.2 + 0.2 * math.tanh(mu / (sigma + 1e-6)), rel=1e-5)
    return mu, sigma


def test_two_processes_sampling_see_the_whole_generation_batchs_statistics(runs):
    _check_whole_batch_statistics(runs["sampled"], ranks=2)


def test_two_processes_train_exactly_as_one_process_on_the_same_global_batch(runs):
    mu, _ = _check_whole_batch_statistics(runs["fixed2"], ranks=2)
    assert _check_whole_batch_statistics(runs["fixed1"], ranks=1)[0] == pytest.approx(mu)
    local = [sum(_records(runs["fixed2"], "rewards", r)[0]["rewards"]) / 8 for r in range(2)]
    assert all(abs(m - mu) > 0.02 for m in local)                      # per-process statistics would differ
    logs = [h for h in json.loads((runs["fixed2"] / "log_history.json").read_text()) if "apmpo/p" in h]
    assert logs[1]["clip_ratio/low_mean"] + logs[1]["clip_ratio/high_mean"] > 0.05  # the second update is off-policy

    two = torch.load(runs["fixed2"] / "weights.pt")
    one = torch.load(runs["fixed1"] / "weights.pt")
    start = load_file(runs["model"] / "model.safetensors")
    assert max(float((two[k] - start[k]).abs().max()) for k in start) > 0.1
    for key in start:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-6, msg=key)

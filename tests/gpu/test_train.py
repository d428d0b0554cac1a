"""Two APMPO steps on the device in bf16: the tiny text model (with and without activation checkpointing) and the
tiny vision-language model, through ``apmpo.trainer.train`` exactly as ``apmpo train`` runs it."""

from __future__ import annotations

import math

import pytest

from apmpo.trainer import train
from apmpo.trainer.config import config_from_dict

pytestmark = pytest.mark.gpu


def digit_fraction(completions, **columns):
    """A reward in [0, 1] that differs within groups under a random model."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def first_letter_parity(completions, **columns):
    return [float(ord(c[0]) % 2) if c else 0.0 for c in completions]


def _config(tmp_path, device, **sections):
    base = {
        "seed": 0, "steps": 2,
        "model": {"name": "tiny", "device": str(device), "dtype": "bfloat16", "num_threads": 1},
        "data": {"train": "arithmetic", "task": {"digits": 1}, "train_size": 64, "eval_size": 8},
        "reward": {"functions": {"digits": 1.0}},
        "rollout": {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 12, "temperature": 1.0},
        "algorithm": {"name": "apmpo", "beta": 0.01, "mini_batches": 2},   # reference pass, 2 updates per batch
        "optim": {"lr": 1e-3, "micro_batch_size": 4},
        "logging": {"output_dir": str(tmp_path), "run_name": "run", "tensorboard": False, "progress": "none",
                    "plot": False, "sample_every": 0},
        "checkpoint": {"save_final": False},
        "eval": {"at_start": False, "at_end": True, "max_examples": 4, "batch_size": 4},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return config_from_dict(base)


def _check(result, device):
    assert result.steps == 2 and len(result.history) == 2 and result.eval_after is not None
    assert sum(h["trained_rows"] for h in result.history) > 0
    for h in result.history:
        assert math.isfinite(h["loss"]) and math.isfinite(h["kl"]) and h["kl"] >= 0
        assert 0 < h["grad_norm"] < float("inf") and 0 < h["p"] <= 1 and 0.2 <= h["eps_high"] <= 0.4
        assert ("peak_gpu_gb" in h) == (device.type == "cuda")
        assert h["decode_slot_use"] == 1.0  # the fast engine sampled: only running rows decoded
    assert result.history[-1]["approx_kl"] >= 0 and result.history[-1]["ratio_mean"] > 0


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "activation-checkpointing"])
def test_two_apmpo_steps_with_the_tiny_model(tmp_path, device, checkpointing):
    config = _config(tmp_path, device, model={"gradient_checkpointing": checkpointing})
    _check(train(config, reward_functions={"digits": digit_fraction}), device)


def test_two_apmpo_steps_with_the_tiny_vision_language_model(tmp_path, device):
    config = _config(
        tmp_path, device, model={"name": "tiny-vlm"}, reward={"functions": {"parity": 1.0}},
        data={"train": "geometry", "train_size": 16, "eval_size": 3, "task": {"image_size": 112}},
        rollout={"prompts_per_step": 2, "max_new_tokens": 4}, eval={"max_examples": 3, "batch_size": 3},
    )
    _check(train(config, reward_functions={"parity": first_letter_parity}), device)

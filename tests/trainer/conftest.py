"""Shared helpers: a tiny training config (random Llama, character tokenizer) and trivial rewards."""

from __future__ import annotations

from apmpo.trainer.config import load_config, packaged_config


def sevens(completions, **columns):
    """A trivial reward: the fraction of characters of the completion that are the digit 7."""
    return [c.count("7") / max(len(c), 1) for c in completions]


def exact_answer(completions, answer, **columns):
    """1 if the completion (stripped) is exactly the answer, else 0 (kept local: no dependency on apmpo.rewards)."""
    return [float(c.strip() == str(a)) for c, a in zip(completions, answer)]


REWARDS = {"sevens": sevens}


def tiny_config(tmp_path, *overrides: str):
    """The packaged tiny_test.yaml, writing under ``tmp_path``, no eval, no TensorBoard, plus overrides."""
    base = [
        f"logging.output_dir={tmp_path}",
        "logging.run_name=run",
        "logging.tensorboard=false",
        "logging.progress=none",
        "eval.at_start=false",
        "eval.at_end=false",
    ]
    return load_config(packaged_config("tiny_test"), [*base, *overrides])



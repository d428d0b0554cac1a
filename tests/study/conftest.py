"""Shared helpers: a toy study (tiny random model, two-step runs) written to a temporary directory."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers import TINY_MODEL


def toy_study(tmp_path: Path, **changes) -> dict:
    """A two-step, two-seed study: grpo and apmpo (main), fac_only (ablation, seed 0 only), with a short warm-up."""
    study = {
        "name": "toy",
        "title": "Toy study",
        "description": "Two steps of a tiny model.",
        "train": {
            "steps": 2,
            "model": {"name": "tiny", "device": "cpu"},
            "data": {"train": "arithmetic", "task": {"digits": 1, "template": "{expression}="},
                     "train_size": 64, "eval_size": 8, "use_chat_template": False},
            "rollout": {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 3},
            "algorithm": {"beta": 0.0, "mini_batches": 2},
            "optim": {"lr": 1.0e-3, "micro_batch_size": 8},
            "logging": {"tensorboard": False, "sample_every": 1, "num_samples": 8, "plot": False, "progress": "none"},
            "checkpoint": {"every": 0, "save_final": False},
            "eval": {"every": 1, "max_examples": 8, "batch_size": 8},
        },
        "warmup": {"model": TINY_MODEL, "max_steps": 4, "batch_size": 8, "eval_every": 2, "target_accuracy": 1.0,
                   "accuracy_range": None, "train_size": 64, "validation_size": 8},
        "seeds": [0, 1],
        "arms": {
            "grpo": ["algorithm.name=grpo"],
            "apmpo": {"overrides": ["algorithm.name=apmpo"], "description": "APMPO"},
            "fac_only": {"group": "ablation", "seeds": [0],
                         "overrides": ["algorithm.name=apmpo", "algorithm.params.p_schedule=fixed", "algorithm.params.p=1.0"]},
        },
        "baseline": "grpo",
        "output_dir": str(tmp_path / "out"),
        "jobs": 1,
        "report": {"docs_dir": str(tmp_path / "docs"), "results_md": str(tmp_path / "results.md"), "smooth": 1},
        "quick": {"seeds": [0], "output_dir": str(tmp_path / "quick")},
    }
    study.update(changes)
    return study


def write_study(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_study(tmp_path, **changes), sort_keys=False), encoding="utf-8")
    return path

"""APMPO (arXiv 2605.04066) through TRL: GRPOTrainer users change two names, nothing else.

    # CPU smoke run: tiny random model, built-in arithmetic task, exact-match reward
    python examples/trl/train_apmpo_trl.py --model tiny --max-steps 2 --output runs/trl-tiny

    # the paper's math setup on one node (8 GPUs, vLLM colocated for generation)
    accelerate launch --num_processes 8 examples/trl/train_apmpo_trl.py \\
        --model Qwen/Qwen2.5-Math-1.5B-Instruct --train /data/math_train.jsonl \\
        --output runs/trl-apmpo --use-vllm --bf16

With --train the reward is ``apmpo.rewards.math_accuracy`` (binary, sandboxed); without
it, the built-in arithmetic task and ``exact_match``.

Batch arithmetic (the defaults, on 8 processes), the schedule of apmpo's paper_math_gpu.yaml:

    rollout (generation) batch = per_device_batch x steps_per_generation x processes
                               = 8 x 8 x 8 = 512 completions = 64 prompts x num_generations 8
    one optimizer update       = per_device_batch x grad_accum x processes = 8 x 2 x 8 = 128 completions
    updates per rollout batch  = steps_per_generation / grad_accum = 8 / 2 = 4

At least 2 updates per rollout batch matter: with one (TRL's default, steps_per_generation
= grad_accum) pi_old = pi_theta, every ratio is 1 and APMPO's gradient is exactly GRPO's;
APMPOTrainer warns at construction then (--allow-single-update silences it). On fewer
processes the rollout batch shrinks with them; scale --per-device-batch (or
--steps-per-generation and --grad-accum together) to keep 512 and 4 x 128.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_dataset(train: str | None, limit: int | None):
    """(dataset with a chat "prompt" and an "answer" column, reward function)."""
    from datasets import Dataset

    from apmpo.data import load_examples
    from apmpo.rewards import exact_match, math_accuracy
    from apmpo.tasks import make_task_examples

    if train is None:
        examples, reward = make_task_examples("arithmetic", "train", limit or 64, seed=0), exact_match
    else:
        examples, reward = list(load_examples(train, columns=[], limit=limit)), math_accuracy
    rows = {
        "prompt": [[{"role": "user", "content": example["prompt"]}] for example in examples],
        "answer": [example["answer"] for example in examples],
    }
    return Dataset.from_dict(rows), reward


def resolve_model(name: str, output: Path) -> str:
    """A model path TRL can load twice (policy and reference); "tiny" builds and saves a random one."""
    if name != "tiny":
        return name
    from apmpo.models import tiny_model

    path = output / "tiny-model"
    model, tokenizer = tiny_model(seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description="APMPO via TRL's GRPOTrainer")
    parser.add_argument("--model", required=True, help="HF model id or local path, or 'tiny'")
    parser.add_argument("--train", default=None, help="training file (problem + answer); default: arithmetic task")
    parser.add_argument("--limit", type=int, default=None, help="at most this many training examples")
    parser.add_argument("--output", type=Path, default=Path("runs/trl-apmpo"))
    parser.add_argument("--loss", default="apmpo", help="apmpo.LOSSES key: apmpo, apmpo_group, pmpo, grpo, dapo, gmpo, gspo")
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--per-device-batch", type=int, default=8, help="completions per device per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=2, help="micro-batches per optimizer update")
    parser.add_argument("--steps-per-generation", type=int, default=8,
                        help="micro-batches per rollout batch; / grad-accum = optimizer updates per rollout batch")
    parser.add_argument("--allow-single-update", action="store_true",
                        help="silence the warning that one update per rollout batch makes APMPO's gradient GRPO's")
    parser.add_argument("--max-completion-length", type=int, default=3072)
    parser.add_argument("--use-vllm", action="store_true", help="generate with vLLM (colocated)")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args(argv)

    from apmpo.integrations.trl import APMPOConfig, APMPOTrainer

    tiny = args.model == "tiny"
    try:
        config = APMPOConfig(
            output_dir=str(args.output),
            apmpo_loss=args.loss,
            learning_rate=args.lr,
            max_steps=args.max_steps,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.per_device_batch,
            gradient_accumulation_steps=args.grad_accum,
            steps_per_generation=args.steps_per_generation,
            allow_single_update=args.allow_single_update,
            max_completion_length=args.max_completion_length,
            temperature=1.0,
            use_vllm=args.use_vllm,
            vllm_mode="colocate",
            bf16=args.bf16,
            use_cpu=tiny,
            logging_steps=1,
            save_strategy="no" if tiny else "steps",
            save_steps=100,
            report_to="none",
        )
    except ValueError as exc:  # a configuration mistake: the message names the setting, no traceback (exit 2)
        parser.error(str(exc))
    dataset, reward = build_dataset(args.train, args.limit)
    trainer = APMPOTrainer(
        model=resolve_model(args.model, args.output), reward_funcs=reward, args=config, train_dataset=dataset
    )
    trainer.train()
    trainer.save_model(str(args.output / "final"))
    return trainer


if __name__ == "__main__":
    main()
    sys.exit(0)

"""Worker of tests/integrations/test_trl_distributed.py: ``APMPOTrainer`` on CPU, 1 process or 2 (gloo).

    torchrun --nproc_per_node 2 tests/integrations/trl_worker.py --model DIR --out DIR --per-device 4
    python tests/integrations/trl_worker.py --model DIR --out DIR --per-device 8        # the same global batch

Every process records what its reward function saw (``rewards-rank<r>.jsonl``) and the
statistics each of its loss calls received (``loss-rank<r>.jsonl``); rank 0 writes TRL's
log history and the final weights. ``--rollout fixed`` replaces sampling by TRL's public
``rollout_func`` hook with completions that are a fixed function of (prompt, sample
index): TRL seeds each process differently (``set_seed(seed, device_specific=True)``),
so sampled completions of a 2-process run never equal a 1-process run's, and only
fixed completions let the two runs' weights be compared. Everything after generation
(reward gathering, statistics, loss, DDP all-reduce, AdamW) is TRL's and apmpo's own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

PROMPTS = [f"{a}+{b}=" for a in range(4) for b in range(4)]
"""16 distinct prompts."""


def digit_fraction(completions, **_):
    """Reward in [0, 1]: the fraction of digits in the completion."""
    return [sum(ch.isdigit() for ch in text) / max(len(text), 1) for text in completions]


def fixed_rollout(prompts, trainer):
    """TRL ``rollout_func``: the k-th copy of a prompt always gets the same completion, in any process."""
    tokenizer = trainer.processing_class
    alphabet = tokenizer.convert_tokens_to_ids(list("0123456789abcxyz+= "))
    seen: dict[str, int] = {}
    prompt_ids, completion_ids = [], []
    for prompt in prompts:
        k = seen[prompt] = seen.get(prompt, -1) + 1
        rng = random.Random(f"{prompt}|{k}")
        prompt_ids.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = [rng.choice(alphabet) for _ in range(rng.randint(2, 6))]
        completion_ids.append(ids + [tokenizer.eos_token_id] if rng.random() < 0.5 else ids)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids,
            "logprobs": [[0.0] * len(ids) for ids in completion_ids]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--per-device", type=int, required=True, help="per_device_train_batch_size")
    parser.add_argument("--rollout", choices=["sample", "fixed"], default="sample")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")             # rollout_func is marked experimental

    # imported after the environment above is set (TRL reads it at import)
    import torch
    from datasets import Dataset

    from apmpo.integrations.trl import REWARD_MEAN_KEY, REWARD_STD_KEY, APMPOConfig, APMPOTrainer

    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    args.out.mkdir(parents=True, exist_ok=True)

    def append(name: str, record: dict) -> None:
        with open(args.out / f"{name}-rank{rank}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def reward(completions, **columns):
        scores = digit_fraction(completions)
        append("rewards", {"rewards": scores})
        return scores

    class RecordingTrainer(APMPOTrainer):
        def _compute_loss(self, model, inputs):
            append("loss", {"step": self.state.global_step, "rows": int(inputs["completion_ids"].shape[0]),
                            "mean": float(inputs[REWARD_MEAN_KEY]), "std": float(inputs[REWARD_STD_KEY])})
            return super()._compute_loss(model, inputs)

    config = APMPOConfig(
        output_dir=str(args.out / "trainer"), per_device_train_batch_size=args.per_device, num_generations=4,
        gradient_accumulation_steps=2, num_iterations=2, max_steps=2, max_completion_length=6,
        # adam_epsilon far above |g|: each AdamW step is lr * g / adam_epsilon, linear in the gradient, so the
        # weights compare gradients (Adam's g / sqrt(v) would turn float rounding of near-zero gradients into
        # lr-sized steps); 3 x g moves the policy enough that the second update's ratios clip
        learning_rate=3e4, adam_epsilon=1e4, lr_scheduler_type="constant",
        temperature=1.0, beta=0.0, use_cpu=True, bf16=False, seed=0, logging_steps=1, report_to="none",
        save_strategy="no", shuffle_dataset=True,
        ddp_timeout=120,  # a stuck collective fails the launch in 2 minutes instead of TRL's 30

    )
    trainer = RecordingTrainer(
        model=args.model, reward_funcs=reward, args=config, train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
        rollout_func=fixed_rollout if args.rollout == "fixed" else None,
    )
    trainer.train()
    if trainer.accelerator.is_main_process:
        (args.out / "log_history.json").write_text(json.dumps(trainer.state.log_history))
        torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, args.out / "weights.pt")
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
    # Leave without the interpreter's teardown: with a gloo process group, one rank aborted there
    # ("terminate called without an active exception") or hung in destroy_process_group while the
    # other had already exited. The outputs are written and every rank has passed the barrier above.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


"""Supervised warm-up: teach a model trained from scratch just enough for RL to have a signal.

Setting (a) of the study starts every RL arm from one small transformer trained from
scratch. A randomly initialised model answers nothing correctly, so every reward is 0,
every group advantage is 0 and RL never starts. The warm-up fixes that with plain
supervised learning on correct answers of the verifiable task, stopped early at a
*moderate* accuracy (the paper's models start between ~20% and ~60%), leaving room for
RL to improve. The model is saved once as a local Hugging Face directory and every arm
and seed loads it as ``model.name``: all runs start from the same weights.

What it does, top to bottom (:func:`run_warmup`):

1. build the model (``warmup.model``, e.g. ``"tiny"``: a random Llama with a
   character tokenizer, seeded) and load the study's data exactly as the trainer does
   (``apmpo.trainer.setup.load_data``: same task, template and chat-template rule), so
   the warm-up sees the same prompt format the RL arms will sample from;
2. hold out ``validation_size`` distinct training prompts (seeded shuffle) as a
   validation set and drop every other copy of those prompts from the warm-up data
   (the held-out *eval* split of the study is never used to stop the warm-up);
3. AdamW on the cross-entropy of the answer tokens (the reference answer followed by
   EOS; the prompt tokens are masked out), random batches drawn with a seeded
   generator;
4. every ``eval_every`` steps, greedy accuracy on the validation prompts with
   :func:`apmpo.eval.evaluate_examples` and the run's verifier; stop at the first
   evaluation reaching ``target_accuracy`` (or at ``max_steps``);
5. measure the held-out accuracy of the result exactly as a training run measures its
   step 0, refuse a model outside ``accuracy_range`` (the study would be meaningless),
   save model + tokenizer atomically (temporary directory, then ``os.replace``) and
   write ``warmup.json`` (settings, fingerprint, accuracy history, wall time).

:func:`ensure_warmup` reuses a finished warm-up whose fingerprint (warm-up settings,
data settings, evaluation length) matches and refuses to overwrite one that does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from apmpo.eval.harness import EvalSettings, evaluate_examples
from apmpo.io import atomic_directory, atomic_write_text
from apmpo.models import load_model_and_tokenizer
from apmpo.settings import ConfigError, build_settings
from apmpo.study.config import WarmupConfig
from apmpo.trainer.config import config_to_dict
from apmpo.trainer.setup import build_rewards, load_data

__all__ = ["WarmupConfig", "WarmupError", "WarmupResult", "ensure_warmup", "run_warmup", "warmup_config_from_dict"]

WARMUP_FILE = "warmup.json"
MODEL_SUBDIR = "model"


class WarmupError(ValueError):
    """The warm-up could not produce a usable model (the message says why and what to change)."""


def warmup_config_from_dict(data: Any, where: str = "warmup") -> WarmupConfig:
    """A checked ``WarmupConfig`` from a mapping; every problem names its key (``where`` prefixes it)."""
    try:
        return build_settings(WarmupConfig, data if isinstance(data, dict) else {"": data}, source=where)
    except ConfigError as exc:
        raise WarmupError(str(exc)) from None


@dataclass
class WarmupResult:
    """What a warm-up produced (also in ``warmup.json``)."""

    model_dir: Path
    """The saved model directory (pass it as model.name)."""
    steps: int
    """Optimizer steps taken."""
    validation_accuracy: float
    """Greedy accuracy on the held-back training prompts at the stopping point."""
    heldout_accuracy: float | None
    """Greedy accuracy on the study's held-out split (what every run's step 0 measures)."""
    history: list[dict[str, float]]
    """[{step, loss, validation_accuracy}] at each validation."""
    wall_seconds: float
    """Wall time of the warm-up."""
    parameters: int
    """Number of model parameters."""
    reused: bool = False
    """True when an earlier warm-up was loaded instead of trained."""

    @staticmethod
    def from_record(directory: Path, record: dict[str, Any]) -> WarmupResult:
        """The warm-up saved in ``directory``, from its warmup.json ``record`` (``reused``)."""
        return WarmupResult(
            directory / MODEL_SUBDIR,
            int(record["steps"]),
            float(record["validation_accuracy"]),
            record.get("heldout_accuracy"),
            list(record.get("history", [])),
            float(record.get("wall_seconds", 0.0)),
            int(record.get("parameters", 0)),
            reused=True,
        )


def fingerprint(config: WarmupConfig, train_config: Any) -> str:
    """Hash of everything that determines the warmed-up weights and how they are judged."""

    data = config_to_dict(train_config.data)
    data.pop("train_size", None)
    payload = {
        "warmup": config.model_dump(mode="json") | {"num_threads": None},
        "data": data,
        "reward": config_to_dict(train_config.reward),
        "eval_max_new_tokens": train_config.eval.max_new_tokens or train_config.rollout.max_new_tokens,
        "eval_max_examples": train_config.eval.max_examples,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _split_validation(examples: list[dict], prompts: list[str], size: int, seed: int):
    """(validation examples, warm-up examples, warm-up prompts): ``size`` distinct prompts held back."""
    order = list(range(len(examples)))
    random.Random(f"apmpo-warmup|{seed}").shuffle(order)
    held: dict[str, int] = {}
    for i in order:
        if prompts[i] not in held:
            held[prompts[i]] = i
            if len(held) == size:
                break
    if len(held) < size:
        raise WarmupError(f"warmup.validation_size: only {len(held)} distinct training prompts exist, asked for {size}")
    keep = [i for i in range(len(examples)) if prompts[i] not in held]
    if not keep:
        raise WarmupError(
            "warmup: no training prompt is left after holding out the validation prompts; "
            "raise warmup.train_size or lower warmup.validation_size"
        )
    return [examples[i] for i in held.values()], [examples[i] for i in keep], [prompts[i] for i in keep]


def _encode_batch(tokenizer, prompts: list[str], answers: list[str], add_special_tokens: bool):
    """Right-padded input ids, attention mask and labels (-100 except on answer + EOS tokens)."""

    prompt_ids = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    rows = [(p, a + [tokenizer.eos_token_id]) for p, a in zip(prompt_ids, answer_ids)]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # [B, L]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, L]
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # [B, L]
    for i, (p, a) in enumerate(rows):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        mask[i, : len(p) + len(a)] = 1
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
    return ids, mask, labels


def _accuracy(model, tokenizer, examples, data, train_config, verifier) -> float:
    """Greedy Pass@1 on ``examples`` with the trainer's evaluation settings."""

    ev = train_config.eval
    settings = EvalSettings(
        max_new_tokens=ev.max_new_tokens or train_config.rollout.max_new_tokens,
        max_prompt_tokens=train_config.rollout.max_prompt_tokens,
        batch_size=ev.batch_size,
        seed=train_config.seed,
        limit=ev.max_examples,
    )
    was_training = model.training
    model.eval()
    try:
        result = evaluate_examples(
            model,
            tokenizer,
            examples,
            settings,
            name="warmup",
            template=data.template,
            system_prompt=train_config.data.system_prompt,
            use_chat_template=train_config.data.use_chat_template,
            reward=verifier,
        )
    finally:
        model.train(was_training)
    return float(result.metric("pass@1"))


def run_warmup(config: WarmupConfig, train_config: Any, out_dir: str | os.PathLike, *, log=print) -> WarmupResult:
    """Warm up ``config.model`` on ``train_config``'s data and save it to ``out_dir/model``.

    ``train_config`` is a ``TrainConfig`` (the study's base): its data, reward and eval
    sections define the task, the prompt format and how accuracy is measured.
    """

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        model, tokenizer = load_model_and_tokenizer(config.model, seed=config.seed, device="cpu", dtype="float32")
        data_cfg = train_config.data.model_copy(update={"train_size": config.train_size})
        data = load_data(data_cfg, tokenizer, config.seed)
        if not data.eval:
            raise WarmupError("warmup: the study's data has no held-out split (data.eval) to measure the warm-up on")
        verifier = build_rewards(train_config.reward, data.default_reward).verifier()
        validation, examples, prompts = _split_validation(
            data.train, data.train_prompts, config.validation_size, config.seed
        )
        answers = [str(ex["answer"]) for ex in examples]
        parameters = sum(p.numel() for p in model.parameters())
        log(
            f"warm-up: {config.model} ({parameters:,} parameters) on {len(examples)} examples, "
            f"{len(validation)} validation prompts; stop at validation accuracy >= {config.target_accuracy:.0%}"
        )

        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(config.seed)
        history: list[dict[str, float]] = []
        accuracy, step, loss_value = 0.0, 0, float("nan")
        model.train()
        for step in range(1, config.max_steps + 1):
            idx = torch.randint(len(examples), (config.batch_size,), generator=generator).tolist()
            ids, mask, labels = _encode_batch(
                tokenizer, [prompts[i] for i in idx], [answers[i] for i in idx], data.add_special_tokens
            )
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(loss.detach())
            if step % config.eval_every == 0 or step == config.max_steps:
                accuracy = _accuracy(model, tokenizer, validation, data, train_config, verifier)
                history.append({"step": step, "loss": loss_value, "validation_accuracy": accuracy})
                if accuracy >= config.target_accuracy:
                    break
                if len(history) % 10 == 0:
                    log(f"warm-up step {step}: loss {loss_value:.3f}, validation accuracy {accuracy:.3f}")
        model.eval()
        heldout = _accuracy(model, tokenizer, data.eval, data, train_config, verifier)
        log(f"warm-up done after {step} steps: validation {accuracy:.3f}, held-out {heldout:.3f}")
        if config.accuracy_range is not None:
            lo, hi = config.accuracy_range
            if not lo <= heldout <= hi:
                advice = (
                    "raise warmup.max_steps or warmup.lr"
                    if heldout < lo
                    else "lower warmup.target_accuracy, warmup.eval_every or warmup.lr"
                )
                raise WarmupError(
                    f"warm-up: held-out accuracy {heldout:.3f} after {step} steps is outside "
                    f"warmup.accuracy_range [{lo}, {hi}]; {advice}"
                )

        result = WarmupResult(
            out_dir / MODEL_SUBDIR, step, accuracy, heldout, history, time.perf_counter() - t0, parameters
        )
        _save(model, tokenizer, result, config, train_config, out_dir)
        return result
    finally:
        torch.set_num_threads(previous_threads)


def _save(model, tokenizer, result: WarmupResult, config: WarmupConfig, train_config: Any, out_dir: Path) -> None:
    """model/ (atomic directory replace) and warmup.json (atomic file replace)."""
    with atomic_directory(out_dir / MODEL_SUBDIR) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    record = {
        "fingerprint": fingerprint(config, train_config),
        "settings": config.model_dump(mode="json"),
        "steps": result.steps,
        "validation_accuracy": result.validation_accuracy,
        "heldout_accuracy": result.heldout_accuracy,
        "history": result.history,
        "wall_seconds": result.wall_seconds,
        "parameters": result.parameters,
    }
    atomic_write_text(out_dir / WARMUP_FILE, json.dumps(record, indent=1) + "\n")


def ensure_warmup(config: WarmupConfig, train_config: Any, out_dir: str | os.PathLike, *, log=print) -> WarmupResult:
    """The warm-up in ``out_dir``: reused when finished with the same settings, else trained.

    Raises WarmupError when ``out_dir`` holds a warm-up made with other settings (it is
    never overwritten silently: runs may have started from it).
    """
    out_dir = Path(out_dir)
    record_path = out_dir / WARMUP_FILE
    wanted = fingerprint(config, train_config)
    if record_path.is_file() and (out_dir / MODEL_SUBDIR / "config.json").is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise WarmupError(
                f"{record_path}: not valid JSON ({exc.msg}); delete {out_dir} to redo the warm-up"
            ) from None
        if record.get("fingerprint") != wanted:
            raise WarmupError(
                f"{out_dir}: holds a warm-up made with other settings (fingerprint {record.get('fingerprint')} "
                f"!= {wanted}); use another output_dir or delete {out_dir} (and the runs that used it)"
            )
        log(f"warm-up: reusing {out_dir / MODEL_SUBDIR} (held-out accuracy {record['heldout_accuracy']:.3f})")
        return WarmupResult.from_record(out_dir, record)
    return run_warmup(config, train_config, out_dir, log=log)

"""The RLVR training loop: APMPO (arXiv 2605.04066) or a baseline on a Hugging Face causal LM.

One step, top to bottom, as in ``train`` below:

1. take B prompts and sample G completions each (``generate``, KV cache, left padding);
2. score them with the verifiable reward(s) (+ DAPO's overlong penalty if set); with
   DAPO's dynamic sampling, drop groups whose rewards are all equal and sample more;
3. group advantages A_i = (R_i - mean_g) / (std_g + delta);
4. the rollout batch's reward statistics mu_R, sigma_R -- constants for the whole step.
   An objective that needs them (``LossSpec.needs_reward_stats``: APMPO) receives them
   and derives p = exp(-gamma mu_R) and eps_ada = eps_min + (eps_max - eps_min)
   tanh(mu_R / (sigma_R + delta)) itself;
5. old log-probs pi_old -- skipped when there is a single update per rollout batch
   (epochs = mini_batches = 1): then pi_old = pi_theta and old = current.detach();
6. reference log-probs pi_ref -- only when beta > 0;
7. ``epochs`` (mu) passes x ``mini_batches`` optimizer updates, each accumulated over
   micro-batches (sorted by length, padding trimmed per micro-batch); every micro-batch
   loss uses the mini-batch-wide ``normalizer`` so the accumulated gradient is exactly
   the mini-batch gradient; then grad-norm clipping, AdamW, LR schedule -- an update
   whose loss or gradient norm is NaN or infinite is skipped (``apmpo.trainer.guard``);
8. log, evaluate every ``eval.every`` steps, checkpoint every ``checkpoint.every``.

The objective is looked up in ``apmpo.LOSSES`` by name: the loop never branches on it.

Departures and choices worth knowing:

- Rows with A_i = 0 (groups whose rewards are all equal) are skipped in the gradient
  passes when beta = 0 (``optim.skip_zero_advantage``). This is exact for every
  registered objective (each J_i is A_i times something, so those rows have zero
  gradient) and they still count in the normalizer; the token metrics (clip fractions,
  entropy) are then averaged over the rows that were trained on.
- With dynamic sampling, mu_R and sigma_R are those of the training batch (the kept
  groups); ``accuracy`` in the logs is over everything sampled in the step.
- The reward used for p and FAC must lie in ``algorithm.reward_range`` (default
  [0, 1]); a reward outside stops the run with an error instead of silently producing
  a meaningless p.

Vision-language models (Qwen2-VL / Qwen2.5-VL) train through the same loop: the prompt
encoder chosen once from what the model loader returned
(:func:`apmpo.multimodal.prompt_encoder_for`) attaches the rows' images, renders and
encodes the prompts, and the image tensors ride along in the rollout to generation and
to every log-prob pass.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from apmpo.core import LOSSES, default_normalizer, group_advantages, kl_penalty, policy_loss, reward_statistics
from apmpo.preemption import StopRequest

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, config_to_dict, dump_config_yaml, validate_config
from .guard import UpdateGuard, advance_schedule
from .logprobs import completion_log_probs
from .rollout import Rollout, generate_rollouts
from .setup import (
    PromptSampler,
    ReferencePolicy,
    RewardFunctions,
    TrainData,
    build_optimizer,
    build_rewards,
    build_scheduler,
    disable_dropout,
    load_data,
    resolve_device,
    seed_everything,
)
from .stopping import preempted, sample_unless_stopped
from .tracking import MetricsWriter, ProgressBar, append_jsonl, atomic_write_text, plot_curves

if TYPE_CHECKING:
    from apmpo.multimodal.encoder import PromptEncoder

__all__ = ["StepBatch", "TrainResult", "evaluate_model", "run_directory", "sample_batch", "sample_round", "train"]


@dataclass
class TrainResult:
    """What ``train`` returns (also written to <run>/summary.json)."""

    run_dir: Path
    """The run directory."""
    steps: int
    """The last step trained."""
    eval_before: float | None
    """Held-out accuracy before training (None if not evaluated)."""
    eval_after: float | None
    """Held-out accuracy after the last step (None if not evaluated)."""
    checkpoint: Path | None
    """The last checkpoint written."""
    wall_seconds: float
    """Wall time of this invocation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-step training metrics of this invocation."""


@dataclass
class StepBatch:
    """A scored rollout batch."""

    rollout: Rollout
    """Prompts and completions, groups of G contiguous rows."""
    rewards: torch.Tensor
    """[N] total (shaped) reward of each completion (CPU)."""
    rows: list[dict[str, Any]]
    """[N] the example each completion answers."""
    scores: dict[str, list[float]]
    """Per reward function, its [N] scores."""

    def select(self, index: list[int]) -> StepBatch:
        """The rows ``index``, in that order."""
        return StepBatch(
            self.rollout.select(index),
            self.rewards[index],
            [self.rows[i] for i in index],
            {k: [v[i] for i in index] for k, v in self.scores.items()},
        )

    @staticmethod
    def concat(parts: list[StepBatch], pad_id: int) -> StepBatch:
        """Row-wise concatenation (re-padding prompts and completions)."""
        return StepBatch(
            Rollout.concat([p.rollout for p in parts], pad_id),
            torch.cat([p.rewards for p in parts]),
            [r for p in parts for r in p.rows],
            {k: [v for p in parts for v in p.scores[k]] for k in parts[0].scores},
        )


# --------------------------------------------------------------------------- rollout + reward


def sample_round(
    model,
    encoder: PromptEncoder,
    data: TrainData,
    indices: list[int],
    rewards: RewardFunctions,
    config: TrainConfig,
    device: torch.device,
) -> StepBatch:
    """G samples for each of the prompts ``indices``, scored (TRL's reward contract)."""
    ro = config.rollout
    prompts = [data.train_prompts[i] for i in indices]
    batch = encoder.encode(
        prompts,
        [data.train[i] for i in indices],
        add_special_tokens=data.add_special_tokens,
        max_prompt_tokens=ro.max_prompt_tokens,
        device=device,
    )
    rollout = generate_rollouts(
        model,
        encoder.tokenizer,
        batch,
        num_samples=ro.group_size,
        max_new_tokens=ro.max_new_tokens,
        temperature=ro.temperature,
        top_p=ro.top_p,
        top_k=ro.top_k,
        batch_size=ro.generation_batch_size,
        share_prefill=ro.share_prefill,
    )
    which = rollout.prompt_index.tolist()  # [N] prompt of each row
    completion_ids = [ids[m].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask)]
    labels = [
        f"data.train example {indices[k] + 1}: {prompts[k][:60]!r}, sample {j % ro.group_size + 1} of {ro.group_size}"
        for j, k in enumerate(which)
    ]
    total, scores = rewards.score(
        rollout.completions,
        [data.train[indices[k]] for k in which],
        prompts=[prompts[k] for k in which],
        completion_ids=completion_ids,
        labels=labels,
    )
    return StepBatch(rollout, total, [data.train[indices[k]] for k in which], scores)


def sample_batch(
    model,
    encoder: PromptEncoder,
    data: TrainData,
    sampler: PromptSampler,
    rewards: RewardFunctions,
    config: TrainConfig,
    device: torch.device,
) -> tuple[StepBatch | None, dict[str, float]]:
    """Steps 1-2: B prompts x G samples, scored; DAPO's dynamic sampling keeps only groups whose
    rewards differ and samples more prompts (up to max_sampling_rounds) until B groups are kept.

    Returns the training batch (None if no group was kept) and statistics over everything sampled.
    """
    ro, al = config.rollout, config.algorithm
    B, G = ro.prompts_per_step, ro.group_size
    kept: list[StepBatch] = []
    seen: list[StepBatch] = []
    for _ in range(al.max_sampling_rounds if al.dynamic_sampling else 1):
        batch = sample_round(model, encoder, data, sampler.take(B), rewards, config, device)
        seen.append(batch)
        if al.dynamic_sampling:
            grouped = batch.rewards.view(-1, G)  # [B, G]
            informative = (grouped.amax(1) > grouped.amin(1)).nonzero()[:, 0].tolist()
            missing = B - sum(len(k.rows) for k in kept) // G
            batch = batch.select([g * G + j for g in informative[:missing] for j in range(G)])
        if batch.rows:
            kept.append(batch)
        if sum(len(k.rows) for k in kept) >= B * G:
            break
    verifier = rewards.names[0]
    everything = [(s, r) for b in seen for s, r in zip(b.scores[verifier], b.rollout.completion_lengths.tolist())]
    sampled = {
        "accuracy": sum(s for s, _ in everything) / len(everything),
        "response_length": sum(n for _, n in everything) / len(everything),
        "truncated_frac": sum(float(b.rollout.truncated.sum()) for b in seen) / len(everything),
        "sampling_rounds": len(seen),
        "groups_kept": sum(len(k.rows) for k in kept) // G,
        "generated_tokens": sum(b.rollout.meta["generated_tokens"] for b in seen),
        "generation_seconds": sum(b.rollout.meta["generation_seconds"] for b in seen),
    }
    return (StepBatch.concat(kept, encoder.tokenizer.pad_token_id) if kept else None), sampled


# --------------------------------------------------------------------------- passes


def plan_micro_batches(
    rollout: Rollout, rows: torch.Tensor, size: int, share_prompts: bool = False
) -> list[torch.Tensor]:
    """Split ``rows`` into micro-batches of at most ``size`` rows, ordered to keep padding low.

    Without ``share_prompts``: longest sequences first (each micro-batch is trimmed to its
    own longest row). With it (the passes run each distinct prompt once per micro-batch,
    ``optim.share_prompt_forward``), three orders are costed in body positions --
    sum over micro-batches of U x P + n x T (U distinct prompts, n rows, P and T the
    longest prompt and completion) -- and the cheapest is used: by sequence length (least
    padding), by completion length, or group by group (most sharing; groups ordered by
    their longest row).
    """
    if len(rows) == 0:
        return []
    r = rows.to(rollout.completion_ids.device)
    p_len = rollout.prompt_mask[r].sum(-1).cpu()  # [n]
    c_len = rollout.completion_mask[r].sum(-1).cpu()  # [n]
    orders = [torch.argsort(p_len + c_len, descending=True, stable=True)]
    if share_prompts:
        group = torch.unique(rollout.prompt_index[r].cpu(), return_inverse=True)[1]  # [n] in 0..U-1
        n, g = len(rows), group[orders[0]]  # groups in length order
        first = torch.full((int(group.max()) + 1,), n).scatter_reduce(0, g, torch.arange(n), reduce="amin")  # [U]
        by_group = orders[0][torch.argsort(first[g], stable=True)]  # groups by their longest row
        orders += [torch.argsort(c_len, descending=True, stable=True), by_group]

        def cost(order: torch.Tensor) -> int:
            total = 0
            for chunk in order.split(size):
                u = len(torch.unique(group[chunk])) if len(chunk) > 1 else 1
                P, T = int(p_len[chunk].max()), int(c_len[chunk].max())
                total += (u * P if u < len(chunk) else len(chunk) * P) + len(chunk) * T
            return total

        orders = [min(orders, key=cost)]
    return [rows[chunk] for chunk in orders[0].split(size)]


def shares_prompts(config: TrainConfig, rollout: Rollout) -> bool:
    """Whether the log-prob passes run each prompt once per micro-batch (text-only, no activation checkpointing)."""
    return (
        config.optim.share_prompt_forward
        and not config.model.gradient_checkpointing
        and rollout.extras is None
        and rollout.token_inputs is None
    )


def micro_batches(
    rollout: Rollout, rows: torch.Tensor, size: int, share_prompts: bool = False
) -> Iterator[tuple[torch.Tensor, Rollout]]:
    """(row indices, trimmed sub-rollout) for each micro-batch of :func:`plan_micro_batches`."""
    for idx in plan_micro_batches(rollout, rows, size, share_prompts):
        yield idx, rollout.select(idx).trimmed()


@torch.no_grad()
def batch_log_probs(model, rollout: Rollout, rows: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """[N, T] log-probs of ``rows`` (zeros elsewhere) under ``model``, no gradient."""
    out = torch.zeros(rollout.completion_ids.shape, dtype=torch.float32, device=rollout.completion_ids.device)
    was_training = model.training
    model.eval()
    try:
        op, share = config.optim, shares_prompts(config, rollout)
        for idx, mb in micro_batches(rollout, rows, op.micro_batch_size, share_prompts=share):
            lp = completion_log_probs(
                model,
                mb.prompt_ids,
                mb.prompt_mask,
                mb.completion_ids,
                mb.completion_mask,
                temperature=config.rollout.temperature,
                chunk_size=op.logprob_chunk_size,
                share_prompt=share,
                **mb.model_inputs(),
            ).log_probs  # [n, T']
            out[idx.to(out.device), : lp.shape[1]] = lp.to(out.dtype)
    finally:
        model.train(was_training)
    return out


def _weighted_mean(pairs: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


# --------------------------------------------------------------------------- evaluation


def evaluate_model(
    model, encoder: PromptEncoder, data: TrainData, rewards: RewardFunctions, config: TrainConfig, out_dir: Path | None
) -> float:
    """Held-out accuracy: mean verifier score (Pass@1) on the eval split, via ``apmpo.eval``."""
    from apmpo.eval.harness import EvalSettings, evaluate_examples

    ev = config.eval
    verifier = rewards.functions[0]
    if rewards.kwargs[0]:
        verifier = functools.wraps(verifier)(functools.partial(verifier, **rewards.kwargs[0]))
    settings = EvalSettings(
        n=ev.num_samples,
        temperature=ev.temperature,
        top_p=config.rollout.top_p if ev.temperature > 0 else 1.0,
        max_new_tokens=ev.max_new_tokens or config.rollout.max_new_tokens,
        max_prompt_tokens=config.rollout.max_prompt_tokens,
        batch_size=ev.batch_size,
        seed=config.seed,
        limit=ev.max_examples,
    )
    was_training = model.training
    try:
        result = evaluate_examples(
            model,
            encoder,
            data.eval,
            settings,
            name="heldout",
            template=data.template,
            system_prompt=config.data.system_prompt,
            use_chat_template=config.data.use_chat_template,
            reward=verifier,
            out_dir=out_dir,
        )
    finally:
        model.train(was_training)
    return float(result.metric("pass@1"))


# --------------------------------------------------------------------------- run directory


def run_directory(config: TrainConfig, resume: bool | str) -> Path:
    """The run directory: resume -> an existing one; otherwise a new one (never overwrite a run)."""
    if isinstance(resume, str):
        return Path(resume)
    name = config.logging.run_name
    if resume:
        if name is None:
            raise ValueError("--resume needs the run directory: give it (--resume RUN_DIR) or set logging.run_name")
        return Path(config.logging.output_dir) / name
    if name is None:
        name = f"{config.algorithm.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path = Path(config.logging.output_dir) / name
    if path.exists() and any(path.iterdir()):
        raise ValueError(
            f"{path}: the run directory already exists; use --resume to continue it or choose another logging.run_name"
        )
    return path


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


# --------------------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    *,
    resume: bool | str = False,
    reward_functions: dict[str, Callable[..., Any]] | None = None,
    stop: StopRequest | None = None,
) -> TrainResult:
    """Train as configured.

    Args:
        config: the run's configuration (validated here).
        resume: True (the run directory named by logging) or a run directory: continue
            from its latest complete checkpoint.
        reward_functions: extra reward callables by name (TRL contract), usable in
            ``reward.functions``; with an empty ``reward.functions`` they are all used,
            weight 1 each.
        stop: the stop request of ``apmpo train`` (``StopRequest().installed()``): on a
            stop signal the run abandons or finishes its step, checkpoints the last
            completed step and raises ``apmpo.preemption.Preempted``
            (:mod:`apmpo.trainer.stopping`). None: signals keep their usual effect.
    """
    from apmpo.models import load_model_and_tokenizer
    from apmpo.multimodal.encoder import prompt_encoder_for

    t_start = time.perf_counter()
    config = validate_config(config, extra_rewards=tuple(reward_functions or ()))
    al, ro, op = config.algorithm, config.rollout, config.optim
    G = ro.group_size
    run_dir = run_directory(config, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.model.device)
    if config.model.num_threads:
        torch.set_num_threads(config.model.num_threads)
    seed_everything(config.seed)

    # ---- model, reference policy, data, reward, objective, optimiser
    model, tokenizer = load_model_and_tokenizer(
        config.model.name,
        gguf_file=config.model.gguf_file,
        dtype=config.model.dtype,
        device=device,
        trust_remote_code=config.model.trust_remote_code,
        gradient_checkpointing=config.model.gradient_checkpointing,
        lora=config.model.lora,
        cache_dir=config.model.cache_dir,
        seed=config.seed,
        processor_kwargs=config.model.processor_kwargs,
    )
    encoder = prompt_encoder_for(tokenizer, image_column=config.data.image_column, image_root=config.data.image_root)
    tokenizer = encoder.tokenizer
    disable_dropout(model)
    spec = LOSSES[al.name]
    reference = ReferencePolicy(model, use_adapter_toggle=config.model.lora is not None) if al.beta > 0 else None
    data = load_data(config.data, encoder, config.seed)
    overlong = (ro.max_new_tokens, al.overlong_buffer, al.overlong_penalty) if al.overlong_buffer else None
    rewards = build_rewards(config.reward, data.default_reward, reward_functions, overlong=overlong)
    sampler = PromptSampler(len(data.train), config.seed, config.data.shuffle)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, op)
    scheduler = build_scheduler(optimizer, op, config.steps * al.epochs * al.mini_batches)
    guard = UpdateGuard.for_config(model, optimizer, scheduler, config)  # non-finite loss / gradient: skip the update
    stop = stop or StopRequest()
    skip_zero_adv = op.skip_zero_advantage and al.beta == 0
    reuse_current = al.epochs == 1 and al.mini_batches == 1
    loss_kwargs = dict(al.params)
    if spec.needs_reward_stats and "reward_range" in spec.defaults and list(al.reward_range) != [0.0, 1.0]:
        loss_kwargs["reward_range"] = tuple(al.reward_range)

    # ---- resume
    start_step, controller_history, resumed_from = 0, [], None
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise ValueError(f"{run_dir}: no complete checkpoint to resume from")
        state = load_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        start_step, sampler.position = int(state["step"]), int(state["prompts_consumed"])
        controller_history = list(state.get("controller_history", []))
        guard.load_state(state)
        resumed_from = checkpoint
        for stale in (run_dir / "eval").glob("step-*") if (run_dir / "eval").is_dir() else []:
            if int(stale.name.split("-")[1]) > start_step:
                shutil.rmtree(stale, ignore_errors=True)
    atomic_write_text(run_dir / "config.yaml", dump_config_yaml(config, comments=False))
    writer = MetricsWriter(
        run_dir,
        tensorboard=config.logging.tensorboard,
        wandb=config.logging.wandb,
        wandb_project=config.logging.wandb_project,
        config=config_to_dict(config),
        run_name=run_dir.name,
        resume_step=start_step if resume else None,
    )
    progress = ProgressBar(config.logging.progress, config.steps, start_step, description=al.name)
    for line in data.description:
        progress.write(line)
    if resumed_from is not None:
        progress.write(f"resumed from {resumed_from} (step {start_step})")

    def run_eval(step: int) -> float | None:
        if not data.eval:
            return None
        t0 = time.perf_counter()
        accuracy = evaluate_model(model, encoder, data, rewards, config, run_dir / "eval" / f"step-{step:06d}")
        writer.log(step, {"accuracy": accuracy, "seconds": time.perf_counter() - t0}, kind="eval")
        progress.write(f"step {step}: held-out accuracy {accuracy:.3f}")
        return accuracy

    eval_before = run_eval(0) if config.eval.at_start and start_step == 0 and not resume else None
    eval_after, last_checkpoint, history, step = None, None, [], start_step

    def save(step: int, with_optimizer: bool = True) -> Path:
        return save_checkpoint(
            run_dir,
            step,
            model=model,
            tokenizer=encoder.processor,
            optimizer=optimizer if with_optimizer else None,
            scheduler=scheduler,
            state={
                "prompts_consumed": sampler.position,
                "controller_history": controller_history,
                "config": config_to_dict(config),
                **guard.state(),
            },
            keep_last=config.checkpoint.keep_last,
        )

    try:
        for step in range(start_step + 1, config.steps + 1):
            t_step = time.perf_counter()

            # 1-2. prompts -> G samples each -> rewards (DAPO: keep groups whose rewards differ); a stop signal here
            # abandons the step (nothing changed yet)
            with guard.sampling(step, run_dir):  # non-finite next-token probabilities: a clear NonFiniteError
                drawn = sample_unless_stopped(
                    stop, sampler, lambda: sample_batch(model, encoder, data, sampler, rewards, config, device)
                )
            if drawn is None:
                step -= 1
                break
            batch, sampled = drawn
            t_gen = time.perf_counter() - t_step
            metrics: dict[str, Any] = dict(sampled)
            updates: list[dict[str, float]] = []
            N = len(batch.rows) if batch is not None else 0
            if N:
                rollout, rewards_t = batch.rollout, batch.rewards.to(device)  # [N]
                for name, values in batch.scores.items():
                    metrics[f"reward/{name}"] = sum(values) / len(values)
                # 3. advantages A_i, one per response, shared by its tokens
                advantages = group_advantages(
                    rewards_t, G, normalize=al.advantage_normalization, delta=al.advantage_delta
                )  # [N]

                # 4. batch reward statistics mu_R, sigma_R (constants for the step)
                mu_r, sigma_r = reward_statistics(rewards_t, G, scope=al.reward_stats_scope)  # 0-d or [N]
                hp, row_hp = dict(loss_kwargs), {}
                if spec.needs_reward_stats:
                    lo, hi = al.reward_range
                    if float(rewards_t.min()) < lo - 1e-6 or float(rewards_t.max()) > hi + 1e-6:
                        raise ValueError(
                            f"step {step}: rewards span [{float(rewards_t.min()):.4g}, {float(rewards_t.max()):.4g}], outside "
                            f"algorithm.reward_range [{lo}, {hi}]; {al.name!r} derives its controllers from the reward "
                            "statistics and needs the true range declared (e.g. algorithm.reward_range=[-1,1])"
                        )
                    if al.reward_stats_scope == "batch":
                        hp.update(reward_mean=float(mu_r), reward_std=float(sigma_r))
                    else:
                        row_hp = {"reward_mean": mu_r, "reward_std": sigma_r}

                # which tokens train: completion tokens (minus truncated completions, if masked)
                loss_mask = rollout.completion_mask.clone()  # [N, T]
                if al.mask_truncated:
                    loss_mask &= ~rollout.truncated[:, None]
                has_tokens = loss_mask.any(-1)  # [N]
                active = has_tokens & (advantages != 0) if skip_zero_adv else has_tokens
                active_rows = active.nonzero()[:, 0].cpu()
                train_rollout = dataclasses.replace(rollout, completion_mask=loss_mask, meta={})
                share = shares_prompts(config, train_rollout)  # one body pass per prompt and micro-batch

                # 5. old log-probs: not needed when each rollout batch gets a single update
                old_log_probs = None if reuse_current else batch_log_probs(model, train_rollout, active_rows, config)

                # 6. reference log-probs: only with a KL penalty
                ref_log_probs = None
                if reference is not None:
                    with reference.model() as ref_model:
                        ref_log_probs = batch_log_probs(ref_model, train_rollout, active_rows, config)

                # 7. mu epochs x mini-batches, gradient accumulation over micro-batches
                model.train()
                forward_tokens = 0
                for epoch in range(al.epochs):
                    order = torch.randperm(N) if al.mini_batches > 1 else torch.arange(N)
                    for mini in torch.tensor_split(
                        order, al.mini_batches
                    ):  # equal parts (N may be short with dynamic sampling)
                        normalizer = default_normalizer(loss_mask[mini.to(loss_mask.device)], spec.aggregation)
                        rows = mini[active[mini.to(active.device)].cpu()]
                        parts: dict[str, list[tuple[float, float]]] = {}
                        ran, mini_loss = False, 0.0
                        for idx, mb in micro_batches(train_rollout, rows, op.micro_batch_size, share_prompts=share):
                            out = completion_log_probs(
                                model,
                                mb.prompt_ids,
                                mb.prompt_mask,
                                mb.completion_ids,
                                mb.completion_mask,
                                temperature=ro.temperature,
                                chunk_size=op.logprob_chunk_size,
                                with_entropy=epoch == 0,
                                share_prompt=share,
                                **mb.model_inputs(),
                            )
                            log_probs, T_mb = out.log_probs, mb.completion_ids.shape[1]  # [n, T']
                            forward_tokens += out.body_tokens
                            i = idx.to(device)
                            old = old_log_probs[i, :T_mb] if old_log_probs is not None else log_probs.detach()
                            loss, m_metrics = policy_loss(
                                al.name,
                                log_probs,
                                old,
                                advantages[i],
                                mb.completion_mask,
                                normalizer=normalizer,
                                **hp,
                                **{k: v[i] for k, v in row_hp.items()},
                            )
                            if ref_log_probs is not None:
                                kl, kl_metrics = kl_penalty(
                                    log_probs,
                                    ref_log_probs[i, :T_mb],
                                    mb.completion_mask,
                                    estimator=al.kl_estimator,
                                    aggregation=spec.aggregation,
                                    normalizer=normalizer,
                                )
                                loss = loss + al.beta * kl
                                m_metrics.update(kl_metrics)
                            loss.backward()
                            ran, mini_loss = True, mini_loss + float(loss.detach())
                            n_tok = float(mb.completion_mask.sum())
                            if out.entropy is not None:
                                m_metrics["entropy"] = float(out.entropy[mb.completion_mask].mean())
                            for key, value in m_metrics.items():
                                parts.setdefault(key, []).append((float(value), n_tok))
                        if not ran:  # nothing to learn from: a zero gradient, as the full computation gives
                            for p in trainable:
                                p.grad = torch.zeros_like(p)
                        grad_norm = guard.step(mini_loss)  # clip + AdamW + LR schedule, or skip if not finite
                        update = {k: _weighted_mean(v) for k, v in parts.items()}
                        update.update(loss=mini_loss, grad_norm=grad_norm)
                        updates.append(update)
                model.eval()

                if not any("p" in u for u in updates):  # no row trained: read the controllers off the objective
                    _, probe = policy_loss(
                        al.name,
                        torch.zeros(1, 1),
                        torch.zeros(1, 1),
                        torch.ones(1),
                        torch.ones(1, 1),
                        **hp,
                        **{k: v[:1].cpu() for k, v in row_hp.items()},
                    )
                    updates.append({k: probe[k] for k in ("p", "eps_high", "fss") if k in probe})
                metrics.update(
                    reward_mean=float(rewards_t.mean()),
                    reward_std=float(rewards_t.std()) if N > 1 else 0.0,
                    mu_r=float(mu_r.float().mean()),
                    sigma_r=float(sigma_r.float().mean()),
                    adv_zero_frac=float((advantages == 0).float().mean()),
                    trained_rows=int(active.sum()),
                    train_tokens=int(loss_mask.sum()),
                    forward_tokens=forward_tokens,
                )
            else:  # dynamic sampling kept no group: no update, but the LR schedule keeps pace with the steps
                advance_schedule(scheduler, al.epochs * al.mini_batches)

            # 8. log
            for key in sorted({k for u in updates for k in u}):
                values = [u[key] for u in updates if u.get(key) is not None]
                if values:
                    metrics[key] = sum(values) / len(values)
            step_seconds = time.perf_counter() - t_step
            seq_tokens = int(rollout.prompt_mask.sum() + rollout.completion_mask.sum()) if N else 0
            metrics.update(
                lr=scheduler.get_last_lr()[0],
                step_seconds=step_seconds,
                rollout_seconds=t_gen,
                train_seconds=step_seconds - t_gen,
                tokens_per_s=seq_tokens / step_seconds,
                train_tokens_per_s=metrics.get("forward_tokens", 0) / max(step_seconds - t_gen, 1e-9),
                gen_tokens_per_s=sampled["generated_tokens"] / max(sampled["generation_seconds"], 1e-9),
                prompts_consumed=sampler.position,
                peak_rss_gb=_peak_rss_gb(),
            )
            if device.type == "cuda":
                metrics["peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / 1024**3
            guard.end_step(metrics)
            writer.log(step, metrics)
            guard.check(step, run_dir)
            history.append(metrics)
            controller_history.append(
                {k: metrics.get(k) for k in ("p", "eps_high", "fss", "mu_r", "sigma_r")} | {"step": step}
            )
            if config.logging.sample_every and step % config.logging.sample_every == 0 and N:
                for i in torch.linspace(0, N - 1, min(config.logging.num_samples, N)).round().long().unique().tolist():
                    append_jsonl(
                        run_dir / "samples.jsonl",
                        {
                            "step": step,
                            "prompt": batch.rows[i].get("prompt"),
                            "answer": batch.rows[i].get("answer"),
                            "completion": rollout.completions[i],
                            "reward": float(batch.rewards[i]),
                            "advantage": float(advantages[i]),
                            "scores": {k: v[i] for k, v in batch.scores.items()},
                            "truncated": bool(rollout.truncated[i]),
                        },
                    )
            progress.update(
                {
                    "acc": metrics["accuracy"],
                    "R": metrics.get("reward_mean"),
                    "p": metrics.get("p"),
                    "eps": metrics.get("eps_high"),
                    "len": metrics["response_length"],
                    "s/step": step_seconds,
                }
            )

            # 9. periodic evaluation and checkpoint
            if (
                config.eval.every
                and step % config.eval.every == 0
                and not (step == config.steps and config.eval.at_end)
            ):
                run_eval(step)
            if (config.checkpoint.every and step % config.checkpoint.every == 0) or (
                step == config.steps and config.checkpoint.save_final
            ):
                last_checkpoint = save(step, config.checkpoint.save_optimizer)
            if stop.requested:
                break
        if stop.requested and step < config.steps:
            raise preempted(stop, run_dir, step, config.steps, save)
        if config.eval.at_end and step == config.steps and step > start_step:
            eval_after = run_eval(step)
    finally:
        progress.close()
        writer.close()

    if config.logging.plot:
        plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png", title=f"{al.name} on {config.data.train}")
    result = TrainResult(
        run_dir, step, eval_before, eval_after, last_checkpoint, time.perf_counter() - t_start, history
    )
    _write_summary(result, config)
    return result


def _write_summary(result: TrainResult, config: TrainConfig) -> None:
    import json

    from .tracking import read_jsonl

    evals = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    summary = {
        "algorithm": config.algorithm.name,
        "model": config.model.name,
        "data": config.data.train,
        "steps": result.steps,
        "eval_accuracy_before": next((r["accuracy"] for r in evals if r["step"] == 0), None),
        "eval_accuracy_after": next((r["accuracy"] for r in reversed(evals) if r["step"] == result.steps), None),
        "eval": [{"step": r["step"], "accuracy": r["accuracy"]} for r in evals],
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "wall_seconds": result.wall_seconds,
    }
    atomic_write_text(result.run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")

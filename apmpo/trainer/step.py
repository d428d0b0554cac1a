"""One step of RL training, as functions: sample -> prepare -> update (log, evaluation and checkpoints: loop.py).

1. :func:`sample` -- take B prompts and sample G completions each (the fast sampling
   engine, or ``generate`` where it cannot decode the model: ``rollout.engine``) and score them with the verifiable reward(s) (+ DAPO's overlong
   penalty if set); with DAPO's dynamic sampling, drop groups whose rewards are all
   equal and sample more.
2. :func:`prepare` -- everything the gradient passes need, computed once per step:
   the group advantages A_i = (R_i - mean_g) / (std_g + delta); the rollout batch's
   reward statistics mu_R, sigma_R (constants for the step; an objective that needs them,
   ``LossSpec.needs_reward_stats``, receives them and derives p = exp(-gamma mu_R) and
   eps_ada itself; their scope is the objective's, ``LossSpec.reward_stats_scope``: per
   prompt group, one value per row, for ``apmpo_group``); the loss mask (DAPO's overlong
   filtering); the old log-probs (skipped with a single update per rollout batch: then
   pi_old = pi_theta); the reference log-probs (only when beta > 0).
3. :func:`update` -- ``epochs`` (mu) passes x ``mini_batches`` optimizer updates, each
   accumulated over micro-batches (ordered by length, padding trimmed per micro-batch);
   every micro-batch loss uses the mini-batch-wide ``normalizer`` so that the
   accumulated gradient is exactly the mini-batch gradient. :func:`optimizer_step` is
   the one place where the gradient is clipped and the optimizer and the learning-rate
   schedule advance; an update whose loss or gradient norm is NaN or infinite is
   skipped there, leaving the weights and the optimizer state untouched
   (:mod:`apmpo.trainer.guard`). The gradient norms before clipping (mean and max over
   the step's updates) and the spread of the mini-batch gradients are logged with the
   step (:mod:`apmpo.trainer.update_stats`).

The objective is looked up in ``apmpo.LOSSES`` by name: nothing here branches on it.
What it uses besides the tensors (p, eps_high, FSS) is read off its registry entry
(``LossSpec.controllers``) when no response was trained on.

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
  a meaningless p (:func:`apmpo.core.check_reward_range`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from apmpo.core import (
    check_reward_range,
    default_normalizer,
    group_advantages,
    kl_penalty,
    policy_loss,
    resolve_hyperparameters,
    reward_statistics,
)
from apmpo.core.losses import LossSpec
from apmpo.sampling.encoder import PromptEncoder
from apmpo.sampling.rollout import Rollout, generate_rollouts

from .config import TrainConfig
from .guard import UpdateGuard, advance_schedule, clip_to_norm, gradient_norm
from .logprobs import completion_log_probs
from .setup import PromptSampler, ReferencePolicy, RewardFunctions, TrainData
from .update_stats import UpdateStatistics

__all__ = [
    "PreparedBatch",
    "StepBatch",
    "TrainingRun",
    "batch_log_probs",
    "micro_batches",
    "optimizer_step",
    "plan_micro_batches",
    "prepare",
    "sample",
    "sample_round",
    "update",
]


@dataclass
class TrainingRun:
    """What every step works with, assembled once by :func:`apmpo.trainer.loop.train`."""

    config: TrainConfig
    """The run's (validated) configuration."""
    model: torch.nn.Module
    """The policy pi_theta."""
    encoder: PromptEncoder
    """Renders and encodes prompts (text, or with images for a vision-language model)."""
    data: TrainData
    """Training and held-out examples."""
    rewards: RewardFunctions
    """The weighted reward functions; the first is the verifier."""
    sampler: PromptSampler
    """Hands out training example indices (its position is checkpointed)."""
    optimizer: torch.optim.Optimizer
    """AdamW over the trainable parameters."""
    scheduler: Any
    """The learning-rate schedule (one step per optimizer update)."""
    reference: ReferencePolicy | None
    """pi_ref, only when beta > 0."""
    spec: LossSpec
    """The objective's registry entry."""
    device: torch.device
    """Where the model and the batch live."""
    guard: UpdateGuard
    """Skips updates whose loss or gradient is not finite; stops the run after too many in a row."""

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer updates."""
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def single_update(self) -> bool:
        """One update per rollout batch: the old log-probs equal the current ones (pi_old = pi_theta)."""
        return self.config.algorithm.epochs == 1 and self.config.algorithm.mini_batches == 1

    @property
    def skip_zero_advantage(self) -> bool:
        """Skip the gradient passes of rows whose advantage is exactly 0 (exact without a KL term)."""
        return self.config.optim.skip_zero_advantage and self.config.algorithm.beta == 0


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


# --------------------------------------------------------------------------- 1. sample


def sample_round(run: TrainingRun, indices: list[int]) -> StepBatch:
    """G samples for each of the prompts ``indices``, scored (TRL's reward contract)."""
    ro, data = run.config.rollout, run.data
    prompts = [data.train_prompts[i] for i in indices]
    batch = run.encoder.encode(
        prompts,
        [data.train[i] for i in indices],
        add_special_tokens=data.add_special_tokens,
        max_prompt_tokens=ro.max_prompt_tokens,
        device=run.device,
    )
    rollout = generate_rollouts(
        run.model,
        run.encoder.tokenizer,
        batch,
        ro,
        num_samples=ro.group_size,
        batch_size=ro.generation_batch_size,
        share_prefill=ro.share_prefill,
    )
    which = rollout.prompt_index.tolist()  # [N] prompt of each row
    completion_ids = [ids[m].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask)]
    labels = [  # which example and sample each completion is, for the error on a non-finite reward
        f"data.train example {indices[k] + 1}: {prompts[k][:60]!r}, sample {j % ro.group_size + 1} of {ro.group_size}"
        for j, k in enumerate(which)
    ]
    total, scores = run.rewards.score(
        rollout.completions,
        [data.train[indices[k]] for k in which],
        prompts=[prompts[k] for k in which],
        completion_ids=completion_ids,
        labels=labels,
    )
    return StepBatch(rollout, total, [data.train[indices[k]] for k in which], scores)


def _informative_groups(batch: StepBatch, group_size: int, wanted: int) -> StepBatch:
    """DAPO's dynamic sampling: the first ``wanted`` groups of ``batch`` whose rewards are not all equal."""
    grouped = batch.rewards.view(-1, group_size)  # [B, G]
    informative = (grouped.amax(1) > grouped.amin(1)).nonzero()[:, 0].tolist()
    return batch.select([g * group_size + j for g in informative[:wanted] for j in range(group_size)])


def sample(run: TrainingRun) -> tuple[StepBatch | None, dict[str, float]]:
    """B prompts x G samples, scored; DAPO's dynamic sampling keeps only groups whose rewards differ and
    samples more prompts (up to max_sampling_rounds) until B groups are kept.

    Returns the training batch (None if no group was kept) and statistics over everything sampled.
    """
    ro, al = run.config.rollout, run.config.algorithm
    B, G = ro.prompts_per_step, ro.group_size
    kept: list[StepBatch] = []
    seen: list[StepBatch] = []
    for _ in range(al.max_sampling_rounds if al.dynamic_sampling else 1):
        batch = sample_round(run, run.sampler.take(B))
        seen.append(batch)
        if al.dynamic_sampling:
            batch = _informative_groups(batch, G, B - sum(len(k.rows) for k in kept) // G)
        if batch.rows:
            kept.append(batch)
        if sum(len(k.rows) for k in kept) >= B * G:
            break
    return (StepBatch.concat(kept, run.encoder.tokenizer.pad_token_id) if kept else None), _sampled(run, seen, kept)


def _sampled(run: TrainingRun, seen: list[StepBatch], kept: list[StepBatch]) -> dict[str, float]:
    """Statistics over every completion sampled in the step (kept or not)."""
    verifier = run.rewards.names[0]
    generated = sum(b.rollout.meta["generated_tokens"] for b in seen)
    row_steps = sum(b.rollout.meta["row_steps"] for b in seen)
    everything = [(s, r) for b in seen for s, r in zip(b.scores[verifier], b.rollout.completion_lengths.tolist())]
    return {
        "accuracy": sum(s for s, _ in everything) / len(everything),
        "response_length": sum(n for _, n in everything) / len(everything),
        "truncated_frac": sum(float(b.rollout.truncated.sum()) for b in seen) / len(everything),
        "sampling_rounds": len(seen),
        "groups_kept": sum(len(k.rows) for k in kept) // run.config.rollout.group_size,
        "generated_tokens": generated,
        "generation_seconds": sum(b.rollout.meta["generation_seconds"] for b in seen),
        "row_steps": row_steps,
        "decode_slot_use": generated / max(row_steps, 1),
    }


# --------------------------------------------------------------------------- 2. prepare


@dataclass
class PreparedBatch:
    """A scored batch with everything the gradient passes need (computed once per step)."""

    batch: StepBatch
    """The scored rollout batch."""
    rollout: Rollout
    """The batch's rollout with the loss mask as completion mask (what the passes train on)."""
    rewards: torch.Tensor
    """[N] rewards, on the model's device."""
    advantages: torch.Tensor
    """[N] group advantages A_i, one per response, shared by its tokens."""
    reward_mean: torch.Tensor
    """mu_R: 0-d (batch scope) or [N] (group scope)."""
    reward_std: torch.Tensor
    """sigma_R, as reward_mean."""
    loss_mask: torch.Tensor
    """[N, T] the tokens that train: completion tokens, minus truncated completions if masked."""
    active: torch.Tensor
    """[N] rows the gradient passes run (with a token, and a non-zero advantage when those are skipped)."""
    loss_kwargs: dict[str, Any]
    """The objective's hyperparameters, with the batch-scope reward statistics."""
    row_kwargs: dict[str, torch.Tensor]
    """Per-row [N] reward statistics (group scope), indexed per micro-batch."""
    old_log_probs: torch.Tensor | None
    """[N, T] log pi_old, or None with a single update per rollout batch."""
    ref_log_probs: torch.Tensor | None
    """[N, T] log pi_ref, or None without a KL penalty."""
    share_prompts: bool
    """The passes run each prompt once per micro-batch (text-only, no activation checkpointing)."""


def prepare(run: TrainingRun, batch: StepBatch, step: int) -> PreparedBatch:
    """Advantages, reward statistics (and the objective's view of them), loss mask, old and reference log-probs."""
    al, spec = run.config.algorithm, run.spec
    rewards = batch.rewards.to(run.device)  # [N]
    advantages = group_advantages(
        rewards, run.config.rollout.group_size, normalize=al.advantage_normalization, delta=al.advantage_delta
    )  # [N]
    scope = spec.reward_stats_scope  # the objective's: "batch" (the paper) or "group" (apmpo_group)
    mu_r, sigma_r = reward_statistics(rewards, run.config.rollout.group_size, scope=scope)  # 0-d or [N]
    loss_kwargs, row_kwargs = al.loss_kwargs(), {}
    if spec.needs_reward_stats:
        try:
            check_reward_range(rewards, al.reward_range)
        except ValueError as exc:
            raise ValueError(
                f"step {step}: {exc}; {al.name!r} derives its controllers from the reward statistics: "
                "declare the true range as algorithm.reward_range (e.g. algorithm.reward_range=[-1,1])"
            ) from None
        if scope == "batch":
            loss_kwargs.update(reward_mean=float(mu_r), reward_std=float(sigma_r))
        else:
            row_kwargs = {"reward_mean": mu_r, "reward_std": sigma_r}
    loss_mask = batch.rollout.completion_mask.clone()  # [N, T]
    if al.mask_truncated:
        loss_mask &= ~batch.rollout.truncated[:, None]
    has_tokens = loss_mask.any(-1)  # [N]
    active = has_tokens & (advantages != 0) if run.skip_zero_advantage else has_tokens
    rollout = dataclasses.replace(batch.rollout, completion_mask=loss_mask, meta={})
    share = shares_prompts(run.config, rollout)
    rows = active.nonzero()[:, 0].cpu()
    old = None if run.single_update else batch_log_probs(run.model, rollout, rows, run.config)
    ref = None
    if run.reference is not None:
        with run.reference.model() as ref_model:
            ref = batch_log_probs(ref_model, rollout, rows, run.config)
    return PreparedBatch(
        batch, rollout, rewards, advantages, mu_r, sigma_r, loss_mask, active, loss_kwargs, row_kwargs, old, ref, share
    )


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
    by_length = torch.argsort(p_len + c_len, descending=True, stable=True)
    if not share_prompts:
        return [rows[chunk] for chunk in by_length.split(size)]
    group = torch.unique(rollout.prompt_index[r].cpu(), return_inverse=True)[1]  # [n] in 0..U-1
    n, g = len(rows), group[by_length]  # groups in length order
    first = torch.full((int(group.max()) + 1,), n).scatter_reduce(0, g, torch.arange(n), reduce="amin")  # [U]
    by_group = by_length[torch.argsort(first[g], stable=True)]  # groups by their longest row
    orders = [by_length, torch.argsort(c_len, descending=True, stable=True), by_group]
    best = min(orders, key=lambda order: _body_positions(order, size, group, p_len, c_len))
    return [rows[chunk] for chunk in best.split(size)]


def _body_positions(
    order: torch.Tensor, size: int, group: torch.Tensor, p_len: torch.Tensor, c_len: torch.Tensor
) -> int:
    """Positions the model body processes for micro-batches cut from ``order``, with a shared prompt pass."""
    total = 0
    for chunk in order.split(size):
        u = len(torch.unique(group[chunk])) if len(chunk) > 1 else 1
        P, T = int(p_len[chunk].max()), int(c_len[chunk].max())
        total += (u * P if u < len(chunk) else len(chunk) * P) + len(chunk) * T
    return total


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
def batch_log_probs(model: torch.nn.Module, rollout: Rollout, rows: torch.Tensor, config: TrainConfig) -> torch.Tensor:
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


# --------------------------------------------------------------------------- 3. update


def update(run: TrainingRun, prepared: PreparedBatch) -> tuple[list[dict[str, float | None]], int]:
    """``epochs`` passes x ``mini_batches`` optimizer updates; returns each update's metrics and the body positions run.

    Each epoch visits the rows in a fresh random order when there are several mini-batches
    (one ``torch.randperm`` per epoch, from the global generator). A last entry holds the
    step's update statistics (grad_norm_max, grad_var, grad_var_ratio:
    :mod:`apmpo.trainer.update_stats`).
    """
    al = run.config.algorithm
    N = len(prepared.batch.rows)
    updates: list[dict[str, float | None]] = []
    forward_tokens = 0
    gradients = UpdateStatistics(run.trainable, al.epochs * al.mini_batches, run.config.logging.grad_variance)
    run.model.train()
    for epoch in range(al.epochs):
        order = torch.randperm(N) if al.mini_batches > 1 else torch.arange(N)
        for mini in torch.tensor_split(order, al.mini_batches):  # equal parts (N may be short with dynamic sampling)
            metrics, tokens = update_mini_batch(run, prepared, mini, epoch, gradients)
            updates.append(metrics)
            forward_tokens += tokens
    run.model.eval()
    statistics: dict[str, float | None] = {**gradients.summary([float(u["grad_norm"] or 0.0) for u in updates])}
    updates.append(statistics)
    if not any("p" in u for u in updates):  # no row trained: the controllers from the registry
        updates.append(controllers_of(run, prepared))
    return updates, forward_tokens


def update_mini_batch(
    run: TrainingRun, prepared: PreparedBatch, mini: torch.Tensor, epoch: int, gradients: UpdateStatistics | None = None
) -> tuple[dict[str, float | None], int]:
    """One optimizer update: gradients accumulated over the micro-batches of ``mini`` (rows of the batch)."""
    op = run.config.optim
    normalizer = default_normalizer(prepared.loss_mask[mini.to(prepared.loss_mask.device)], run.spec.aggregation)
    rows = mini[prepared.active[mini.to(prepared.active.device)].cpu()]
    parts: dict[str, list[tuple[float, float]]] = {}
    ran, mini_loss, forward_tokens = False, 0.0, 0
    for idx, mb in micro_batches(prepared.rollout, rows, op.micro_batch_size, share_prompts=prepared.share_prompts):
        loss, metrics, body_tokens = micro_batch_backward(run, prepared, idx, mb, normalizer, with_entropy=epoch == 0)
        ran, mini_loss, forward_tokens = True, mini_loss + loss, forward_tokens + body_tokens
        n_tok = float(mb.completion_mask.sum())
        for key, value in metrics.items():
            parts.setdefault(key, []).append((float(value), n_tok))
    if not ran:  # nothing to learn from: a zero gradient, as the full computation gives
        for p in run.trainable:
            p.grad = torch.zeros_like(p)
    grad_norm = optimizer_step(run, mini_loss, gradients)
    update = {k: _weighted_mean(v) for k, v in parts.items()}
    update.update(loss=mini_loss, grad_norm=grad_norm)
    return update, forward_tokens


def micro_batch_backward(
    run: TrainingRun, prepared: PreparedBatch, idx: torch.Tensor, mb: Rollout, normalizer: int, *, with_entropy: bool
) -> tuple[float, dict[str, float], int]:
    """Forward and backward of one micro-batch (rows ``idx``); returns its loss, metrics and body positions."""
    al, op = run.config.algorithm, run.config.optim
    out = completion_log_probs(
        run.model,
        mb.prompt_ids,
        mb.prompt_mask,
        mb.completion_ids,
        mb.completion_mask,
        temperature=run.config.rollout.temperature,
        chunk_size=op.logprob_chunk_size,
        with_entropy=with_entropy,
        share_prompt=prepared.share_prompts,
        **mb.model_inputs(),
    )
    log_probs, T_mb = out.log_probs, mb.completion_ids.shape[1]  # [n, T']
    i = idx.to(run.device)
    old = prepared.old_log_probs[i, :T_mb] if prepared.old_log_probs is not None else log_probs.detach()
    loss, metrics = policy_loss(
        al.name,
        log_probs,
        old,
        prepared.advantages[i],
        mb.completion_mask,
        normalizer=normalizer,
        **prepared.loss_kwargs,
        **{k: v[i] for k, v in prepared.row_kwargs.items()},
    )
    if prepared.ref_log_probs is not None:
        kl, kl_metrics = kl_penalty(
            log_probs,
            prepared.ref_log_probs[i, :T_mb],
            mb.completion_mask,
            estimator=al.kl_estimator,
            aggregation=run.spec.aggregation,
            normalizer=normalizer,
        )
        loss = loss + al.beta * kl
        metrics.update(kl_metrics)
    loss.backward()
    if out.entropy is not None:
        metrics["entropy"] = float(out.entropy[mb.completion_mask].mean())
    return float(loss.detach()), metrics, out.body_tokens


def optimizer_step(run: TrainingRun, loss: float, gradients: UpdateStatistics | None = None) -> float:
    """Clip the accumulated gradient, step AdamW and the schedule, clear the gradient; returns the gradient norm
    before clipping.

    ``loss`` is the update's loss (summed over its micro-batches). If it or the gradient
    norm is NaN or infinite the update is skipped (``run.guard`` records why): the
    gradient is dropped and neither the weights nor the optimizer state change; the
    schedule still advances. ``gradients`` records an admitted update's gradient (before
    clipping) for the step's update statistics.
    """
    max_norm = run.config.optim.max_grad_norm
    norm = gradient_norm(run.trainable, max_norm)
    if run.guard.admits(loss, float(norm)):
        if gradients is not None:
            gradients.add()
        clip_to_norm(run.trainable, max_norm, norm)
        run.optimizer.step()
        run.scheduler.step()
    else:
        advance_schedule(run.scheduler)
    run.optimizer.zero_grad(set_to_none=True)
    return float(norm)


def skip_update(run: TrainingRun) -> None:
    """A step without a batch (dynamic sampling kept no group): no update, but the schedule keeps pace with the steps."""
    al = run.config.algorithm
    advance_schedule(run.scheduler, al.epochs * al.mini_batches)


def controllers_of(run: TrainingRun, prepared: PreparedBatch) -> dict[str, float | None]:
    """p, eps_high (and FSS) the objective uses for this batch, from the registry (per-row controllers: their mean)."""
    spec, hp = resolve_hyperparameters(run.config.algorithm.name, {**prepared.loss_kwargs, **prepared.row_kwargs})
    controllers = spec.controllers(**hp) if spec.controllers is not None else {}
    return {
        k: float(torch.as_tensor(controllers[k]).float().mean()) for k in ("p", "eps_high", "fss") if k in controllers
    }


def _weighted_mean(pairs: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None

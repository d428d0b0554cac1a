"""APMPO for TRL users: ``APMPOConfig`` / ``APMPOTrainer``, drop-ins for ``GRPOConfig`` / ``GRPOTrainer``.

Paper: Huang et al., "Adapt to Thrive! Adaptive Power-Mean Policy Optimization",
arXiv 2605.04066. Tested with TRL 1.16.0 (``pip install "apmpo[trl]"``). Changing
``GRPOConfig``/``GRPOTrainer`` to ``APMPOConfig``/``APMPOTrainer`` is the whole migration;
generation (transformers or vLLM), reward functions, PEFT, the reference model, logging
and checkpoints stay TRL's.

What is replaced, and nothing else:

- the loss (``_compute_loss``): ``apmpo.policy_loss(config.apmpo_loss, ...)`` -- the
  core objective, so any core loss ("apmpo", "apmpo_group", "pmpo", "grpo", "dapo", "gmpo", "gspo")
  runs like for like -- plus beta * ``apmpo.kl_penalty`` (k3, aggregated like the
  policy term);
- the scoring step (``_calculate_rewards`` / ``_generate_and_score_completions``) gains
  the rollout batch's reward statistics mu_R, sigma_R: computed from the rewards of the
  whole generation batch gathered over all processes (TRL's weighted sum of the reward
  functions, a None adding nothing as everywhere in apmpo: :mod:`apmpo.rewards.base`), once per generation,
  before any gradient step, and put in the batch dict as 0-d tensors (``"batch"`` scope,
  the paper) or one value per completion (``"group"`` scope: ``apmpo_group``; the scope is
  the objective's ``LossSpec.reward_stats_scope``). TRL's splitter and
  shuffler pass 0-d tensors through unchanged and move per-row ones with their rows,
  so every micro-batch sees the statistics of the batch it came from.

Aggregation and gradient accumulation: response-level losses divide the summed
objective by the responses of one optimizer step on this process
(``per_device_train_batch_size * gradient_accumulation_steps``), like TRL's "grpo" loss;
token-level ones ("dapo") by TRL's ``num_items_in_batch`` rescaled the way TRL rescales
it (exact when ``steps_per_generation == gradient_accumulation_steps``, the default).
Accumulated micro-batches therefore give the full-batch gradient, and DDP's average
over processes the global one.

Departures from TRL's GRPO behaviour and refusals (each raises naming the setting):

- advantages stay TRL's (``scale_rewards``, ``multi_objective_aggregation``); TRL
  divides by ``std + 1e-4`` where the spec uses ``std + 1e-6`` -- only groups with a tiny
  non-zero spread differ, and J is linear in A_i;
- vLLM importance-sampling correction: sequence-level modes (TRL's default
  ``"sequence_mask"``, and ``"sequence_truncate"``) weight each response, i.e. multiply
  A_i, which is exact for J = (1/N) sum_i A_i M_p(x_i); token-level modes have no meaning
  inside a power mean and are refused;
- refused because they change the objective: ``loss_type`` other than TRL's default
  (use ``apmpo_loss``), ``importance_sampling_level="sequence"`` (use
  ``apmpo_loss="gspo"``), ``delta`` (two-sided clip), ``epsilon_high`` (set the loss's
  ``eps_high`` in ``loss_kwargs``; APMPO's comes from eps_min/eps_max),
  ``top_entropy_quantile < 1``, ``off_policy_mask_threshold``, the entropy bonus, and
  ``use_bias_correction_kl`` with ``beta != 0`` (the spec's KL is plain k3);
- Liger: TRL 1.16 applies only Liger's layer kernels (its fused GRPO loss, which
  bypassed ``_compute_loss`` in older TRL, is gone), so ``use_liger_kernel`` works; a TRL
  with a ``use_liger_loss`` setting turned on is refused;
- defaults follow the paper where TRL's differ: ``beta=0.001`` (TRL: 0.0) and
  ``use_bias_correction_kl=False``;
- start-up warning (``apmpo.core.single_update_warning``, at construction, main process):
  when every generation batch feeds a single optimizer update (TRL's default
  ``steps_per_generation = gradient_accumulation_steps`` with ``num_iterations=1``),
  pi_old = pi_theta and the gradient of apmpo, apmpo_group, pmpo, gmpo and gspo is exactly GRPO's;
  ``allow_single_update=True`` silences it.

Logged as TRL metrics every step: ``apmpo/p``, ``apmpo/eps_high`` (FAC's eps_ada),
``apmpo/fss``, ``apmpo/reward_mean``, ``apmpo/reward_std``, ``clip_ratio/low_mean``,
``clip_ratio/high_mean``, ``entropy``, ``kl``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer

import apmpo
from apmpo.core import REQUIRED, SingleUpdateWarning, normalize_reward_stats, single_update_warning

__all__ = ["APMPOConfig", "APMPOTrainer", "REWARD_MEAN_KEY", "REWARD_STD_KEY", "updates_per_generation"]

REWARD_MEAN_KEY = "apmpo_reward_mean"
"""Key of mu_R in TRL's batch dict (0-d tensor, or [B] for the "group" scope)."""
REWARD_STD_KEY = "apmpo_reward_std"
"""Key of sigma_R in TRL's batch dict."""

_FORWARD_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)
"""Batch entries TRL forwards to the model (vision-language inputs); passed through unchanged."""

_METRIC_KEYS = ("p", "eps_low", "eps_high", "fss", "reward_mean", "reward_std")
"""Core loss metrics logged as ``apmpo/<key>`` when the loss reports them."""


def _grpo_default(name: str) -> Any:
    return {f.name: f for f in dataclasses.fields(GRPOConfig)}[name].default


@dataclass
class APMPOConfig(GRPOConfig):
    """``GRPOConfig`` plus APMPO's settings (arXiv 2605.04066); every GRPOConfig field keeps its meaning
    except those the module docstring lists as refused or re-defaulted."""

    apmpo_loss: str = field(
        default="apmpo",
        metadata={"help": "Core objective: a key of apmpo.LOSSES (apmpo, apmpo_group, pmpo, grpo, dapo, gmpo, gspo)."},
    )
    gamma: float = field(default=0.8, metadata={"help": "APMPO: p = exp(-gamma * mu_R) (paper: 0.8)."})
    eps_min: float = field(default=0.2, metadata={"help": "FAC: smallest upper clip bound (paper: 0.2)."})
    eps_max: float = field(default=0.4, metadata={"help": "FAC: largest upper clip bound (paper: 0.4)."})
    stats_delta: float = field(
        default=1e-6, metadata={"help": "Stabiliser in FSS = mu_R / (sigma_R + delta) (the spec's delta)."}
    )
    reward_range: list[float] | None = field(
        default=None,
        metadata={"help": "[lo, hi] of the summed reward when not [0, 1]; statistics are rescaled to [0, 1]."},
    )
    loss_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Other hyperparameters of the core loss (JSON string from the CLI), e.g. {'p': 0.5} for pmpo, "
            "{'p_schedule': 'linear'} or {'fss': 'mean'} for APMPO ablations, {'eps_high': 0.28} for dapo."
        },
    )
    beta: float = field(
        default=0.001, metadata={"help": "KL coefficient (paper: 0.001; TRL's GRPOConfig default is 0.0)."}
    )
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={"help": "Must stay False with beta != 0: the spec's KL is the plain k3 estimator."},
    )
    allow_single_update: bool = field(
        default=False,
        metadata={
            "help": "Silence the start-up warning given when one optimizer update per generation batch makes "
            "the loss's gradient GRPO's (apmpo, apmpo_group, pmpo, gmpo, gspo)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.loss_kwargs, str):
            try:
                self.loss_kwargs = json.loads(self.loss_kwargs)
            except json.JSONDecodeError as exc:
                raise ValueError(f"loss_kwargs: not valid JSON ({exc.msg}): {self.loss_kwargs!r}") from None
        self.loss_kwargs = dict(self.loss_kwargs or {})
        _validate(self)


def _validate(args: APMPOConfig) -> None:
    """Refuse settings that the core objective cannot honour, naming the setting and the alternative."""
    if args.apmpo_loss not in apmpo.LOSSES:
        raise ValueError(f"apmpo_loss: unknown loss {args.apmpo_loss!r}; known: {', '.join(sorted(apmpo.LOSSES))}")
    spec = apmpo.LOSSES[args.apmpo_loss]
    computed = {"reward_mean", "reward_std", "normalizer"}
    loss_kwargs = args.loss_kwargs if isinstance(args.loss_kwargs, dict) else {}
    bad = sorted(set(loss_kwargs) & computed)
    if bad:
        raise ValueError(f"loss_kwargs: {', '.join(bad)} are computed by the trainer; remove them")
    unknown = sorted(set(loss_kwargs) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"loss_kwargs: {args.apmpo_loss} has no hyperparameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(set(spec.defaults) - computed))}"
        )
    missing = sorted(
        k for k, v in spec.defaults.items() if v is REQUIRED and k not in computed and k not in loss_kwargs
    )
    if missing:
        example = f"loss_kwargs={{'{missing[0]}': ...}}"
        raise ValueError(f"loss_kwargs: {args.apmpo_loss} needs {', '.join(missing)} (e.g. {example})")
    if args.reward_range is not None and not (
        len(args.reward_range) == 2 and args.reward_range[0] < args.reward_range[1]
    ):
        raise ValueError(f"reward_range={args.reward_range!r}: expected [lo, hi] with lo < hi")
    if "eps_low" not in spec.defaults and args.epsilon != _grpo_default("epsilon"):
        bounds = ", ".join(sorted(k for k in spec.defaults if "clip" in k or k.startswith("eps")))
        raise ValueError(
            f"epsilon={args.epsilon}: {args.apmpo_loss} has no eps_low; leave epsilon at its default "
            f"and set the loss's clip bounds in loss_kwargs ({bounds})"
        )
    refusals = [
        (
            args.loss_type != _grpo_default("loss_type"),
            f"loss_type={args.loss_type!r} selects a TRL loss; APMPOTrainer's loss is apmpo_loss "
            f"(one of {', '.join(sorted(apmpo.LOSSES))})",
        ),
        (
            args.importance_sampling_level != "token",
            f"importance_sampling_level={args.importance_sampling_level!r} changes the objective; leave 'token' and "
            "use apmpo_loss='gspo' for a sequence ratio",
        ),
        (
            args.delta is not None,
            f"delta={args.delta}: two-sided clipping is not part of the objective; leave delta=None",
        ),
        (
            args.epsilon_high is not None,
            f"epsilon_high={args.epsilon_high}: epsilon_high is not used: APMPO's upper clip is FAC's eps_ada in "
            "[eps_min, eps_max]; for fixed-clip losses set loss_kwargs={'eps_high': ...}",
        ),
        (
            args.top_entropy_quantile != 1.0,
            f"top_entropy_quantile={args.top_entropy_quantile} masks tokens out of the power mean; leave 1.0",
        ),
        (
            args.off_policy_mask_threshold is not None,
            f"off_policy_mask_threshold={args.off_policy_mask_threshold} is not supported; leave None",
        ),
        (
            args.entropy_coef != 0.0 or args.use_adaptive_entropy,
            f"entropy_coef={args.entropy_coef}, use_adaptive_entropy={args.use_adaptive_entropy}: the entropy bonus "
            "is not part of the objective; set entropy_coef=0.0 and use_adaptive_entropy=False",
        ),
        (
            args.beta != 0.0 and args.use_bias_correction_kl,
            "use_bias_correction_kl=True reweights the KL by the ratio; the spec's KL is plain k3: set it False",
        ),
        (
            args.use_vllm
            and args.vllm_importance_sampling_correction
            and not args.vllm_importance_sampling_mode.startswith("sequence"),
            f"vllm_importance_sampling_mode={args.vllm_importance_sampling_mode!r}: token-level IS weights have no "
            "meaning inside a power mean; use 'sequence_mask' or 'sequence_truncate'",
        ),
        (
            bool(getattr(args, "use_liger_loss", False)),
            "use_liger_loss=True: Liger's fused GRPO loss bypasses the APMPO loss; set use_liger_loss=False",
        ),
    ]
    for refused, message in refusals:
        if refused:
            raise ValueError(f"APMPOConfig: {message}")


def updates_per_generation(args: GRPOConfig) -> int:
    """The most optimizer updates that use any one generation batch (1: every update is on-policy).

    TRL generates every ``steps_per_generation * num_iterations`` micro-steps and steps the
    optimizer every ``gradient_accumulation_steps``; a batch fed to one update only is
    scored with pi_old = pi_theta (TRL then skips the old-log-prob pass).
    """
    if args.steps_per_generation is None:  # GRPOConfig.__post_init__ sets it; None only before that ran
        raise ValueError("steps_per_generation: unset; pass a GRPOConfig whose __post_init__ has run")
    every = args.steps_per_generation * args.num_iterations  # micro-steps per generation batch
    accumulation = args.gradient_accumulation_steps
    batches = math.lcm(every, accumulation) // every  # the pattern repeats after this many
    return max(len({step // accumulation for step in range(k * every, (k + 1) * every)}) for k in range(batches))


def _single_update_text(args: APMPOConfig) -> str | None:
    """``apmpo.core.single_update_warning`` with TRL's settings."""
    accumulation = args.gradient_accumulation_steps
    return single_update_warning(
        args.apmpo_loss,
        updates_per_generation(args),
        allowed=args.allow_single_update,
        settings=(
            f"num_iterations={args.num_iterations}, steps_per_generation={args.steps_per_generation}, "
            f"gradient_accumulation_steps={accumulation}"
        ),
        fix=(
            f"steps_per_generation={4 * accumulation} (4 x gradient_accumulation_steps: 4 updates per generation "
            "batch, the schedule of apmpo's paper_math_gpu.yaml), or num_iterations=2"
        ),
        silence="APMPOConfig(allow_single_update=True)",
    )


class APMPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose loss is the core's ``apmpo.policy_loss`` with the batch reward statistics.

    Same constructor as ``GRPOTrainer``; ``args`` must be an ``APMPOConfig`` (default:
    ``APMPOConfig("<model>-APMPO")``).
    """

    args: APMPOConfig
    model: Any

    def __init__(self, model: Any, reward_funcs: Any = None, args: APMPOConfig | None = None, **kwargs: Any):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            args = APMPOConfig(f"{name.rstrip('/').split('/')[-1]}-APMPO")
        if not isinstance(args, APMPOConfig):
            raise TypeError(f"args: APMPOTrainer needs an APMPOConfig, got {type(args).__name__}")
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self._apmpo_spec = apmpo.LOSSES[args.apmpo_loss]
        self._apmpo_rewards_per_func: torch.Tensor | None = None
        single_update = _single_update_text(args)
        if single_update is not None and self.accelerator.is_main_process:
            warnings.warn(single_update, SingleUpdateWarning, stacklevel=2)

    # ------------------------------------------------------------------ scoring

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._apmpo_rewards_per_func = rewards_per_func  # [N_all_processes, n_funcs]
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._apmpo_rewards_per_func = None
        output = super()._generate_and_score_completions(inputs)
        if self._apmpo_rewards_per_func is None:
            raise RuntimeError("APMPOTrainer: TRL did not call _calculate_rewards; this TRL version is not supported")
        mean, std = self._reward_statistics(self._apmpo_rewards_per_func, len(output["advantages"]))
        output[REWARD_MEAN_KEY], output[REWARD_STD_KEY] = mean, std
        return output

    def _reward_statistics(self, rewards_per_func: torch.Tensor, local_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_R, sigma_R) from the gathered per-function rewards: 0-d, or this process's [B] rows."""
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights[None, :]).nansum(dim=1)  # [N] the rewards TRL's advantages use
        args = self.args
        if self._apmpo_spec.reward_stats_scope == "batch":
            mean, std = apmpo.reward_statistics(rewards)
            normalize_reward_stats(float(mean), float(std), args.reward_range)
            return mean, std
        num_generations = self.num_generations if self.model.training else self.num_generations_eval
        mean, std = apmpo.reward_statistics(rewards, group_size=num_generations, scope="group")  # [N], [N]
        normalize_reward_stats(mean, std, args.reward_range)
        start = self.accelerator.process_index * local_rows
        return mean[start : start + local_rows], std[start : start + local_rows]

    # ------------------------------------------------------------------ loss

    def _normalizer(self, inputs: dict, mode: str) -> float:
        """The divisor making micro-batch losses add up to the loss of one optimizer step on this process."""
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        if self._apmpo_spec.aggregation == "response":
            return float(inputs["completion_ids"].shape[0] * accumulation)
        tokens = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if mode == "train":
            tokens = tokens * accumulation / self.args.steps_per_generation
        return float(tokens)

    def _loss_hyperparameters(self, inputs: dict) -> dict[str, Any]:
        args, spec = self.args, self._apmpo_spec
        candidates = {
            "eps_low": args.epsilon,
            "gamma": args.gamma,
            "eps_min": args.eps_min,
            "eps_max": args.eps_max,
            "delta": args.stats_delta,
            "reward_range": None if args.reward_range is None else tuple(args.reward_range),
        }
        hp = {k: v for k, v in candidates.items() if k in spec.defaults and v is not None}
        if spec.needs_reward_stats:
            if REWARD_MEAN_KEY not in inputs:
                raise RuntimeError("APMPOTrainer: the batch has no reward statistics (scoring step was bypassed)")
            hp["reward_mean"], hp["reward_std"] = inputs[REWARD_MEAN_KEY], inputs[REWARD_STD_KEY]
        hp.update(args.loss_kwargs if isinstance(args.loss_kwargs, dict) else {})
        return hp

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)  # [B, P + T]
        attention_mask = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)  # [B, P + T]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]  # [B, T]
        log_probs, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            completion_ids.size(1),
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            **{k: inputs.get(k) for k in _FORWARD_KEYS},
        )  # [B, T]
        old_log_probs = inputs.get("old_per_token_logps")
        old_log_probs = log_probs.detach() if old_log_probs is None else old_log_probs  # [B, T]
        advantages = inputs["advantages"]  # [B]
        if advantages.dim() != 1:
            raise ValueError(f"advantages: APMPO needs one per completion, got shape {tuple(advantages.shape)}")
        if self.use_vllm and self.vllm_importance_sampling_correction:
            advantages = advantages * inputs["importance_sampling_ratio"].reshape(-1)  # [B] sequence-level IS
        normalizer = self._normalizer(inputs, mode)
        loss, metrics = apmpo.policy_loss(
            self._apmpo_spec.name,
            log_probs,
            old_log_probs,
            advantages,
            mask,
            normalizer=normalizer,
            **self._loss_hyperparameters(inputs),
        )
        if self.beta != 0.0:
            kl, _ = apmpo.kl_penalty(
                log_probs, inputs["ref_per_token_logps"], mask, "k3", self._apmpo_spec.aggregation, normalizer
            )
            loss = loss + self.beta * kl
            self._metrics[mode]["kl"].append(
                self._global_mean(
                    apmpo.core.kl_per_token(log_probs.detach(), inputs["ref_per_token_logps"], "k3"), mask
                )
            )
        if self.aux_loss_enabled:
            accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
            loss = loss + self.router_aux_loss_coef * aux_loss / accumulation
        self._log_loss_metrics(mode, metrics, entropies, mask)
        return loss

    # ------------------------------------------------------------------ metrics

    def _global_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean of [B, T] values over the valid tokens of all processes."""
        mask_b = mask.bool()
        local = torch.stack([torch.where(mask_b, values, 0.0).sum(), mask_b.sum().to(values.dtype)])
        total = self.accelerator.reduce(local.detach(), reduction="sum")
        return float(total[0] / total[1].clamp(min=1.0))

    def _log_loss_metrics(self, mode: str, metrics: dict, entropies: torch.Tensor, mask: torch.Tensor) -> None:
        for key in _METRIC_KEYS:
            if key in metrics:
                self._metrics[mode][f"apmpo/{key}"].append(metrics[key])
        local = torch.tensor([metrics["clip_frac_low"], metrics["clip_frac_high"]], device=self.accelerator.device)
        low, high = self.accelerator.gather(local[None, :]).mean(dim=0).tolist()
        self._metrics[mode]["clip_ratio/low_mean"].append(low)
        self._metrics[mode]["clip_ratio/high_mean"].append(high)
        self._metrics[mode]["entropy"].append(self._global_mean(entropies.detach(), mask))

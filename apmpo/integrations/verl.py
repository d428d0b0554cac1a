"""APMPO inside verl 0.9.x (Ray; FSDP, Megatron; vLLM, SGLang): losses, config, reward statistics.

Paper: Huang et al., "Adapt to Thrive! Adaptive Power-Mean Policy Optimization",
arXiv 2605.04066. Tested with verl 0.9.1 (``pip install "apmpo[verl]"``). The math is
``apmpo.policy_loss``: this module only maps verl's tensors and config onto it.

Importing this module (in every Ray process: ``VERL_USE_EXTERNAL_MODULES=apmpo.integrations.verl``
in ``ray_kwargs.ray_init.runtime_env.env_vars``, see examples/verl/) registers:

1. policy losses ``"apmpo"`` and ``"pmpo"`` in verl's ``POLICY_LOSS_REGISTRY``, with
   verl's signature ``(old_log_prob, log_prob, advantages, response_mask,
   loss_agg_mode, config, rollout_is_weights) -> (loss, metrics)``;
2. ``APMPOPolicyLossConfig``, the ``PolicyLossConfig`` subclass named by
   ``actor_rollout_ref.actor.policy_loss._target_`` (verl rejects unknown keys under
   ``policy_loss`` otherwise) that holds gamma, eps_min, eps_max, delta and the ablation
   settings;
3. trainer modes ``apmpo_sync``, ``apmpo_colocate_async`` and ``apmpo_separate_async``
   (``trainer.v1.trainer_mode``): verl's v1 trainers plus the reward-statistics route
   below (only where verl's v1 trainer can be imported).

Start-up (``check_config``): the trainer modes' constructor, and the Hydra callback
``StartupCheck`` when the config names it (``hydra.callbacks``; the example YAML does),
refuse every run whose settings could never train the loss (wrong config class,
length-weighted aggregation, a trainer mode that never computes the statistics, GAE,
token-level IS, distillation, bad hyperparameters), naming setting, value and fix, before
any worker or rollout; and warn (``apmpo.core.single_update_warning``) when
``ppo_epochs x train_batch_size / ppo_mini_batch_size`` is 1, which makes the loss GRPO's.

How mu_R and sigma_R reach the loss (why this route). verl's policy loss receives
log-probs, token advantages, the mask, IS weights and the actor config -- never the
rewards, and GRPO advantages cannot be turned back into rewards (a group whose rewards
are all equal has advantage 0 whatever the reward). Only the driver sees the whole
rollout batch (a worker sees its data-parallel shard, the loss a micro-batch), so:

- the trainer mode computes (mu_R, sigma_R) on the driver from the batch's reward
  scores (``rm_scores`` summed over tokens; verl's padding rows excluded), once per
  batch, before the actor update, and puts them in the batch's metadata
  (``KVBatchMeta.extra_info``);
- verl turns that metadata into non-tensor entries of every mini- and micro-batch
  TensorDict, so the statistics travel WITH the data they describe through
  data-parallel dispatch, mini-batch shuffling, dynamic batch sizes and the async
  trainers (a side channel -- a Ray actor, a file, a global -- could pair a batch with
  another batch's statistics in the async modes);
- ``apmpo_ppo_loss`` wraps verl's own worker loss ``verl.workers.utils.losses.ppo_loss``:
  it copies the two numbers onto the mutable fields ``reward_mean``/``reward_std`` of
  ``APMPOPolicyLossConfig`` (the idiom verl itself uses for
  ``ActorConfig.global_batch_info``), calls ``ppo_loss`` unchanged (KL, entropy and
  metrics stay verl's) and clears them. The trainer installs it once with verl's public
  worker method ``set_loss_fn``; no verl function is patched.

Rejected routes: a custom advantage estimator (runs on the driver but can only return
advantages and returns, neither reaches the loss with the statistics); encoding the
statistics in a tensor the loss sees (would corrupt verl's advantage/IS metrics).
verl's legacy trainer (``trainer.use_v1=False``, deprecated) has no trainer registry:
the loss refuses to run there with a message saying what to set.

``loss_agg_mode`` (verl) and the power-mean objective. APMPO's objective is
J = (1/N) sum_i A_i * M_p(x_i): each response's tokens are averaged by a power mean,
then responses by an arithmetic mean. That is verl's ``"seq-mean-token-mean"`` with the
token mean generalised to M_p (exactly it at p = 1), and it is the only mode accepted.
The other modes weight each response by its length (``"token-mean"``, ``"token-sum"``)
or sum its tokens (``"seq-mean-token-sum"``, ``"seq-mean-token-sum-norm"``), which the
paper's objective does not do; they are refused with that explanation. N is verl's
global mini-batch size (``global_batch_info["global_batch_size"]``, responses on all
data-parallel ranks): each rank divides its sum by ``global_batch_size / dp_size``, so
the gradient averaged over ranks and accumulated over micro-batches is the full
mini-batch gradient, whatever the split (unlike verl's ``geo_mean``, verl issue 7913).

Departures and mappings (documented, not silent):

- verl stores the advantage per token; APMPO needs one per response. The loss takes
  each response's value and refuses token-varying advantages (e.g. GAE): use an
  outcome estimator (``algorithm.adv_estimator=grpo``, identical to
  ``apmpo.group_advantages`` with delta = 1e-6 and the sample std).
- ``rollout_is_weights`` (verl's rollout correction) enter as one non-negative weight
  per response, multiplying A_i (sequence-level IS: ``rollout_is=sequence``; off unless
  set: verl 0.9.1's generated config has ``rollout_is: null``). Token-level weights have
  no meaning inside a power mean and are refused.
- eps_low is ``actor.clip_ratio_low`` (or ``clip_ratio``); PMPO's eps_high is
  ``actor.clip_ratio_high``; APMPO's upper bound is FAC's eps_ada from eps_min/eps_max.
  verl's dual-clip constant ``clip_ratio_c`` is not part of the objective and is unused.
- ``actor/ppo_kl`` reports the core's ``approx_kl`` (k3 estimate of KL(old || new)).
- The KL to the reference is verl's (``use_kl_loss``, ``kl_loss_type=low_var_kl`` is the
  k3 estimator with verl's clamp), aggregated with the same ``loss_agg_mode``.
"""

from __future__ import annotations

import functools
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from hydra.experimental.callback import Callback
from verl.trainer.ppo.core_algos import register_policy_loss
from verl.workers.config import PolicyLossConfig

import apmpo
from apmpo.core import SingleUpdateWarning, single_update_warning

__all__ = [
    "APMPOPolicyLossConfig",
    "REWARD_MEAN_KEY",
    "StartupCheck",
    "REWARD_STD_KEY",
    "SUPPORTED_LOSS_AGG_MODES",
    "TRAINER_IMPORT_ERROR",
    "apmpo_ppo_loss",
    "check_config",
    "compute_policy_loss_apmpo",
    "compute_policy_loss_pmpo",
    "install_loss",
    "response_advantages",
    "response_weights",
    "rollout_reward_statistics",
    "updates_per_rollout",
    "verl_policy_loss",
]

REWARD_MEAN_KEY = "apmpo_reward_mean"
"""Batch-metadata key carrying mu_R from the driver to the workers."""
REWARD_STD_KEY = "apmpo_reward_std"
"""Batch-metadata key carrying sigma_R from the driver to the workers."""

_VERL_LOSSES = ("apmpo", "pmpo")
"""The loss modes this module registers in verl."""

SUPPORTED_LOSS_AGG_MODES = {"seq-mean-token-mean": "response"}
"""verl loss_agg_mode -> the core's aggregation ("response": one J_i per response, mean over responses)."""

_REFUSED_LOSS_AGG_MODES = {
    "token-mean": "weights each response by its number of tokens",
    "token-sum": "sums tokens over the batch, weighting each response by its length",
    "seq-mean-token-sum": "sums (does not average) the tokens of each response",
    "seq-mean-token-sum-norm": "sums the tokens of each response and divides by a constant",
}

_ACTOR = "actor_rollout_ref.actor"
_CONFIG_HINT = f"set {_ACTOR}.policy_loss._target_=apmpo.integrations.verl.APMPOPolicyLossConfig"
_MODES_HINT = (
    "set trainer.use_v1=true trainer.v1.trainer_mode=apmpo_sync (or apmpo_colocate_async / apmpo_separate_async)"
)
_ROUTE_HINT = (
    f"the rollout batch's reward statistics did not reach the loss: run verl's v1 trainer with an APMPO "
    f"trainer mode ({_MODES_HINT}) and import apmpo.integrations.verl in every Ray process "
    "(ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=apmpo.integrations.verl)"
)


def _loss_agg_mode_problem(loss_agg_mode: str) -> str | None:
    """Why ``loss_agg_mode`` cannot aggregate the power-mean objective, with the fix; None when it can."""
    if loss_agg_mode in SUPPORTED_LOSS_AGG_MODES:
        return None
    why = _REFUSED_LOSS_AGG_MODES.get(loss_agg_mode, "is not a verl aggregation mode")
    return (
        f"loss_agg_mode: {loss_agg_mode!r} {why}; the power-mean objective (1/N) sum_i A_i M_p(x_i) averages the "
        f"tokens of each response by M_p and the responses arithmetically: set {_ACTOR}.loss_agg_mode="
        "seq-mean-token-mean"
    )


@dataclass
class APMPOPolicyLossConfig(PolicyLossConfig):
    """``actor_rollout_ref.actor.policy_loss`` for ``loss_mode`` "apmpo" or "pmpo".

    Name it with ``_target_: apmpo.integrations.verl.APMPOPolicyLossConfig``. verl's own
    fields (loss_mode, rollout_correction, ...) keep their meaning.
    """

    _mutable_fields = PolicyLossConfig._mutable_fields | {"reward_mean", "reward_std"}

    gamma: float = 0.8
    """Decay of the adaptive exponent p = exp(-gamma * mu_R) (paper: 0.8)."""
    eps_min: float = 0.2
    """FAC: smallest upper clip bound (paper: 0.2)."""
    eps_max: float = 0.4
    """FAC: largest upper clip bound (paper: 0.4)."""
    delta: float = 1e-6
    """Stabiliser in FSS = mu_R / (sigma_R + delta) (our choice: 1e-6)."""
    p: float | None = None
    """Fixed exponent: required by "pmpo"; with "apmpo" only for p_schedule "fixed"."""
    p_schedule: str = "exp"
    """APMPO exponent schedule: "exp" (paper), "linear" or "fixed" (ablations)."""
    clip_schedule: str = "fac"
    """APMPO upper clip: "fac" (paper) or "fixed" (uses actor.clip_ratio_high; PMPO-only ablation)."""
    fss: str = "ratio"
    """FSS variant: "ratio" (paper), "mean" or "inverse_std" (ablations)."""
    reward_range: list[float] | None = None
    """[lo, hi] of the rewards when not [0, 1]; mu_R and sigma_R are rescaled to [0, 1]."""
    allow_single_update: bool = False
    """Silence the start-up warning given when one actor update per rollout batch makes the loss GRPO's."""
    reward_mean: float | None = None
    """Runtime only: mu_R of the current batch, set by ``apmpo_ppo_loss``. Leave unset."""
    reward_std: float | None = None
    """Runtime only: sigma_R of the current batch, set by ``apmpo_ppo_loss``. Leave unset."""


# --------------------------------------------------------------------------- tensors


def _per_response(values: torch.Tensor, mask: torch.Tensor, name: str, hint: str) -> torch.Tensor:
    """[N, T] values constant over each response's tokens -> [N] (0 for a response without tokens)."""
    if values.shape != mask.shape:
        raise ValueError(f"{name}: shape {tuple(values.shape)} does not match response_mask {tuple(mask.shape)}")
    values = values.detach()
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    row = torch.where(mask, values, zero).sum(-1) / mask.sum(-1).clamp(min=1).to(values.dtype)  # [N]
    spread = torch.where(mask, (values - row[:, None]).abs(), zero).amax(-1) if values.numel() else row  # [N]
    tolerance = 1e-6 * (1.0 + row.abs())
    bad = torch.nonzero(spread > tolerance).flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(
            f"{name}: response {i} has values varying over its tokens (spread {float(spread[i]):.3g}); "
            f"the power-mean objective needs one value per response: {hint}"
        )
    return row


def response_advantages(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """verl's [N, T] token advantages -> APMPO's [N] response advantages A_i (refuses token-varying ones)."""
    return _per_response(
        advantages,
        response_mask.bool(),
        "advantages",
        "use an outcome-reward estimator such as algorithm.adv_estimator=grpo",
    )


def response_weights(rollout_is_weights: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """verl's [N, T] rollout-correction IS weights -> [N] sequence weights (refuses token-level ones)."""
    weights = _per_response(
        rollout_is_weights,
        response_mask.bool(),
        "rollout_is_weights",
        "set algorithm.rollout_correction.rollout_is=sequence (token-level weights have no meaning "
        "inside a power mean)",
    )
    if (weights < 0).any():
        raise ValueError("rollout_is_weights: negative importance weight")
    return weights


def _normalizer(config: Any) -> float | None:
    """Divisor of the summed objective on this rank: global mini-batch responses / dp_size."""
    info = getattr(config, "global_batch_info", None) or {}
    dp_size = info.get("dp_size") or 1
    global_batch_size = info.get("global_batch_size")
    if global_batch_size is None:
        if dp_size > 1:
            raise ValueError("global_batch_info: global_batch_size is required when dp_size > 1")
        return None  # single rank, no accumulation info: this micro-batch's responses (as verl's agg_loss)
    return float(global_batch_size) / float(dp_size)


def _hyperparameters(name: str, config: Any) -> dict[str, Any]:
    """The core hyperparameters of loss ``name`` from verl's actor config and our policy-loss config."""
    policy = config.policy_loss
    if not isinstance(policy, APMPOPolicyLossConfig):
        raise ValueError(
            f"policy_loss: loss_mode {name!r} needs APMPOPolicyLossConfig, got {type(policy).__name__}; {_CONFIG_HINT}"
        )
    eps_low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    eps_high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    candidates = {
        "eps_low": eps_low,
        "eps_high": eps_high,
        "gamma": policy.gamma,
        "eps_min": policy.eps_min,
        "eps_max": policy.eps_max,
        "delta": policy.delta,
        "p": policy.p,
        "p_schedule": policy.p_schedule,
        "clip_schedule": policy.clip_schedule,
        "fss": policy.fss,
        "reward_range": None if policy.reward_range is None else tuple(policy.reward_range),
        "reward_mean": policy.reward_mean,
        "reward_std": policy.reward_std,
    }
    spec = apmpo.LOSSES[name]
    if spec.needs_reward_stats and (policy.reward_mean is None or policy.reward_std is None):
        raise ValueError(f"{name}: {_ROUTE_HINT}")
    hp = {k: v for k, v in candidates.items() if k in spec.defaults and v is not None}
    missing = sorted(k for k, v in spec.defaults.items() if v is apmpo.core.REQUIRED and k not in hp)
    if missing:
        raise ValueError(
            f"{name}: missing {', '.join(missing)}; set actor_rollout_ref.actor.policy_loss."
            f"{missing[0]}=... ({_CONFIG_HINT})"
        )
    return hp


def verl_policy_loss(
    name: str,
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    config: Any,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """verl's policy-loss call mapped onto ``apmpo.policy_loss(name, ...)``.

    Args:
        name: a key of ``apmpo.LOSSES`` ("apmpo" or "pmpo" are the registered ones).
        old_log_prob, log_prob, response_mask: [N, T] as verl passes them.
        advantages: [N, T], constant over each response's tokens.
        loss_agg_mode: must be "seq-mean-token-mean" (module docstring says why).
        config: verl's ActorConfig with an ``APMPOPolicyLossConfig`` as ``policy_loss``.
        rollout_is_weights: optional [N, T] sequence-level IS weights.

    Returns:
        (loss, metrics): the core's loss scaled for verl's data-parallel averaging, and
        verl-style metric names (``actor/pg_clipfrac``, ``actor/apmpo/p``, ...).
    """
    if config is None:
        raise ValueError(f"{name}: config (verl ActorConfig) is required")
    agg_problem = _loss_agg_mode_problem(loss_agg_mode)
    if agg_problem is not None:
        raise ValueError(agg_problem)
    mask = response_mask.bool()  # [N, T]
    adv = response_advantages(advantages, mask)  # [N]
    if rollout_is_weights is not None:
        adv = adv * response_weights(rollout_is_weights, mask).to(adv.dtype)  # [N]
    hp = _hyperparameters(name, config)
    loss, metrics = apmpo.policy_loss(name, log_prob, old_log_prob, adv, mask, normalizer=_normalizer(config), **hp)
    out = {f"actor/apmpo/{key}": value for key, value in metrics.items()}
    out["actor/pg_clipfrac"] = metrics["clip_frac_high"]
    out["actor/pg_clipfrac_lower"] = metrics["clip_frac_low"]
    out["actor/ppo_kl"] = metrics["approx_kl"]
    return loss, out


@register_policy_loss("apmpo")
def compute_policy_loss_apmpo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """APMPO (adaptive p + FAC) as verl's ``loss_mode=apmpo``; see ``verl_policy_loss``."""
    return verl_policy_loss(
        "apmpo", old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights
    )


@register_policy_loss("pmpo")
def compute_policy_loss_pmpo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PMPO (fixed ``policy_loss.p``, fixed clip bounds) as verl's ``loss_mode=pmpo``."""
    return verl_policy_loss(
        "pmpo", old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights
    )


# --------------------------------------------------------------------------- worker side


def apmpo_ppo_loss(config: Any, model_output: Any, data: Any, dp_group: Any = None):
    """verl's worker loss ``ppo_loss`` with the batch reward statistics handed to the policy loss.

    Reads ``REWARD_MEAN_KEY`` / ``REWARD_STD_KEY`` from the micro-batch's non-tensor data,
    sets them on ``config.policy_loss`` for the duration of the call, and clears them
    afterwards (a later batch without statistics fails loudly instead of reusing these).
    With another ``loss_mode`` it is exactly verl's ``ppo_loss``.
    """
    # optional (verl): the integration's own dependency
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    policy = config.policy_loss
    if not isinstance(policy, APMPOPolicyLossConfig):
        return ppo_loss(config, model_output, data, dp_group)
    mean = tu.get_non_tensor_data(data, REWARD_MEAN_KEY, default=None)
    std = tu.get_non_tensor_data(data, REWARD_STD_KEY, default=None)
    policy.reward_mean = None if mean is None else float(mean)
    policy.reward_std = None if std is None else float(std)
    try:
        return ppo_loss(config, model_output, data, dp_group)
    finally:
        policy.reward_mean = None
        policy.reward_std = None


def install_loss(actor_rollout_wg: Any, config: Any) -> None:
    """Install ``apmpo_ppo_loss`` on every actor worker (verl's public ``set_loss_fn``).

    ``config`` is the full trainer config; the actor config is built from
    ``actor_rollout_ref.actor`` exactly as the worker builds its own.
    """
    # optional (verl): the integration's own dependency
    from verl.utils.config import omega_conf_to_dataclass

    actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    actor_rollout_wg.set_loss_fn(functools.partial(apmpo_ppo_loss, config=actor_config))


# --------------------------------------------------------------------------- start-up checks


def updates_per_rollout(config: Any) -> int:
    """Actor optimizer updates per rollout batch: ppo_epochs x (train_batch_size / ppo_mini_batch_size).

    verl's v1 trainer sends ``ppo_mini_batch_size x rollout.n`` responses per update
    (``_update_actor``: ``global_batch_size``/``mini_batch_size``) over ``ppo_epochs`` passes.
    """
    actor = config.actor_rollout_ref.actor
    return int(actor.ppo_epochs) * max(1, int(config.data.train_batch_size) // int(actor.ppo_mini_batch_size))


def _single_update_text(config: Any, name: str) -> str | None:
    """``apmpo.core.single_update_warning`` with verl's settings (None with bypass mode: pi_old is the rollout's)."""
    correction = config.algorithm.get("rollout_correction") or {}
    if correction.get("bypass_mode", False):  # old log-probs are the rollout engine's: ratios are not exactly 1
        return None
    actor, batch = config.actor_rollout_ref.actor, int(config.data.train_batch_size)
    mini = batch // 4 if batch % 4 == 0 and batch >= 4 else None
    fix = (
        f"{_ACTOR}.ppo_mini_batch_size={mini} (data.train_batch_size={batch} prompts as 4 updates of {mini}, "
        f"the schedule of apmpo's paper_math_gpu.yaml)"
        if mini
        else f"a {_ACTOR}.ppo_mini_batch_size that splits data.train_batch_size={batch} into 2 or more parts"
    )
    return single_update_warning(
        name,
        updates_per_rollout(config),
        allowed=bool(actor.policy_loss.get("allow_single_update", False)),
        settings=(
            f"data.train_batch_size={batch}, {_ACTOR}.ppo_mini_batch_size={actor.ppo_mini_batch_size}, "
            f"{_ACTOR}.ppo_epochs={actor.ppo_epochs}"
        ),
        fix=f"{fix}, or {_ACTOR}.ppo_epochs=2",
        silence=f"{_ACTOR}.policy_loss.allow_single_update=true (+{_ACTOR}... on the command line when the "
        "YAML lacks the key)",
    )


def check_config(config: Any) -> str | None:
    """Start-up checks of a verl run whose policy loss is "apmpo" or "pmpo"; returns the single-update warning.

    Everything that would otherwise stop the run only at the first actor update (after
    validation and a whole rollout) is refused here, each problem naming the setting, its
    value and the fix: the config class, the aggregation mode, the route of the reward
    statistics (an APMPO trainer mode on verl's v1 trainer), the advantage estimator,
    token-level importance weights, on-policy distillation, and the loss's own
    hyperparameters (checked by ``apmpo.policy_loss`` itself on a one-token probe).

    Args:
        config: the full verl trainer config (OmegaConf), as ``main_ppo`` composes it.

    Returns:
        the text of the start-up warning when one update per rollout batch makes the
        loss's gradient GRPO's (``apmpo.core.single_update_warning``), else None.

    Raises:
        ValueError: every problem found, one per line.
    """
    # optional (verl): the integration's own dependency
    from verl.trainer.distillation import is_distillation_enabled
    from verl.utils.config import omega_conf_to_dataclass

    actor = config.actor_rollout_ref.actor
    name = actor.policy_loss.get("loss_mode")
    if name not in _VERL_LOSSES:
        return None
    problems = []
    target = actor.policy_loss.get("_target_")
    if target != f"{__name__}.APMPOPolicyLossConfig":
        problems.append(f"{_ACTOR}.policy_loss._target_={target}: loss_mode={name} needs {_CONFIG_HINT}")
    agg_problem = _loss_agg_mode_problem(actor.loss_agg_mode)
    if agg_problem is not None:
        problems.append(f"{_ACTOR}.{agg_problem}")
    mode = config.trainer.get("v1", {}).get("trainer_mode")
    use_v1 = bool(config.trainer.get("use_v1", False))
    if apmpo.LOSSES[name].needs_reward_stats and not (use_v1 and str(mode).startswith("apmpo_")):
        problems.append(
            f"trainer.use_v1={use_v1}, trainer.v1.trainer_mode={mode}: loss_mode={name} needs the rollout batch's "
            f"reward statistics, which only the APMPO trainer modes compute on the driver and send to the loss: "
            f"{_MODES_HINT}"
        )
    if config.algorithm.get("adv_estimator") == "gae":
        problems.append(
            "algorithm.adv_estimator=gae gives token-varying advantages; the power-mean objective needs "
            "one per response: set algorithm.adv_estimator=grpo"
        )
    rollout_is = (config.algorithm.get("rollout_correction") or {}).get("rollout_is")
    if rollout_is == "token":
        problems.append(
            "algorithm.rollout_correction.rollout_is=token: token-level weights have no meaning inside "
            "a power mean: set algorithm.rollout_correction.rollout_is=sequence (or null: off)"
        )
    if is_distillation_enabled(config.get("distillation")):
        problems.append(
            "distillation.enabled=true: the APMPO losses do not support on-policy distillation: "
            "set distillation.enabled=false"
        )
    if not problems:
        problems += _probe_hyperparameters(name, omega_conf_to_dataclass(actor))
    if problems:
        raise ValueError("\n".join(problems))
    return _single_update_text(config, name)


def _probe_hyperparameters(name: str, actor_config: Any) -> list[str]:
    """The core's own refusal of the loss's hyperparameters, if any, on a one-token batch."""
    policy = actor_config.policy_loss
    policy.reward_mean, policy.reward_std = 0.5, 0.5  # a valid batch; the real ones come per step
    try:
        hp = _hyperparameters(name, actor_config)
        one = torch.zeros(1, 1)
        apmpo.policy_loss(name, one, one, torch.ones(1), torch.ones(1, 1), **hp)
    except ValueError as exc:
        return [f"{_ACTOR}.policy_loss: {exc}"]
    finally:
        policy.reward_mean = policy.reward_std = None
    return []


class StartupCheck(Callback):
    """Hydra callback running ``check_config`` when ``main_ppo`` starts, before Ray, validation or any rollout.

    Enable it in the YAML (``hydra.callbacks.apmpo._target_: apmpo.integrations.verl.StartupCheck``,
    as examples/verl/apmpo_math.yaml does) or on the command line with
    ``+hydra.callbacks.apmpo._target_=apmpo.integrations.verl.StartupCheck``. A problem is
    printed without a traceback and the process exits with status 2. The single-update
    warning is given here only when the run does not use an APMPO trainer mode (those
    give it themselves when they start).
    """

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        try:
            text = check_config(config)
        except ValueError as exc:
            print(f"apmpo: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        if text is not None and not str(config.trainer.get("v1", {}).get("trainer_mode")).startswith("apmpo_"):
            warnings.warn(text, SingleUpdateWarning, stacklevel=2)


# --------------------------------------------------------------------------- driver side


def rollout_reward_statistics(
    token_scores: torch.Tensor, keep: torch.Tensor | None = None, reward_range: list[float] | None = None
) -> tuple[float, float]:
    """(mu_R, sigma_R) of a rollout batch from verl's token-level reward scores.

    Args:
        token_scores: [N, T] ``rm_scores`` (padded with 0); R_i is the sum over tokens
            (verl puts an outcome reward on the last response token).
        keep: [N] bool, False for verl's padding rows (excluded).
        reward_range: declared [lo, hi] when rewards are not in [0, 1] (checked here so
            a bad reward fails on the driver, naming the batch, not inside a worker).
    """
    if token_scores.dim() != 2:
        raise ValueError(f"rm_scores: expected [N, T] token scores, got shape {tuple(token_scores.shape)}")
    rewards = token_scores.detach().float().sum(-1)  # [N]
    if keep is not None:
        rewards = rewards[keep.bool()]
    mean, std = apmpo.reward_statistics(rewards)
    apmpo.core.normalize_reward_stats(float(mean), float(std), reward_range)
    return float(mean), float(std)


class APMPOTrainerMixin:
    """Adds the reward-statistics route to a verl v1 ``PPOTrainer``.

    ``apmpo_<mode>`` only selects the class: ``__init__`` writes ``<mode>`` back into
    ``trainer.v1.trainer_mode`` (verl compares it with "sync" in many places and reads
    ``trainer.v1.<mode>`` settings), so the run is verl's ``<mode>`` trainer in every
    respect except ``_setup`` (installs ``apmpo_ppo_loss``) and ``_update_actor``
    (computes the statistics).
    """

    _apmpo_base_mode: str = ""
    config: Any
    actor_rollout_wg: Any

    def __init__(self, config: Any, *args: Any, **kwargs: Any):
        # optional (verl's omegaconf): the integration's own dependency
        from omegaconf import open_dict

        single_update = check_config(config)  # before any worker, validation or rollout
        if single_update is not None:
            warnings.warn(single_update, SingleUpdateWarning, stacklevel=2)
        with open_dict(config):
            config.trainer.v1.trainer_mode = self._apmpo_base_mode
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]  # the verl trainer it is mixed into

    def _setup(self):
        super()._setup()
        install_loss(self.actor_rollout_wg, self.config)

    def _apmpo_reward_statistics(self, batch: Any) -> tuple[float, float]:
        # optional (verl's TransferQueue): trainer mode only
        import transfer_queue as tq

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["rm_scores"])
        scores = data.to_padded_tensor()["rm_scores"]  # [N, T]
        keep = torch.tensor([not tag.get("is_padding", False) for tag in batch.tags], dtype=torch.bool)
        policy = self.config.actor_rollout_ref.actor.policy_loss
        return rollout_reward_statistics(scores, keep, policy.get("reward_range"))

    def _update_actor(self, batch: Any, metrics: dict) -> Any:
        mean, std = self._apmpo_reward_statistics(batch)
        batch.extra_info[REWARD_MEAN_KEY] = mean
        batch.extra_info[REWARD_STD_KEY] = std
        metrics["apmpo/reward_mean"] = mean
        metrics["apmpo/reward_std"] = std
        return super()._update_actor(batch, metrics)  # type: ignore[misc]  # the verl trainer it is mixed into


def _register_trainers() -> str | None:
    """Register ``apmpo_<mode>`` for each verl v1 trainer mode; returns the import error, if any."""
    try:
        # optional (verl's v1 trainers): registered only where they import
        from verl.trainer.ppo.v1 import (  # noqa: F401
            trainer_colocate_async,
            trainer_separate_async,
            trainer_sync,
        )
        from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
    except ImportError as exc:  # e.g. a CPU-only install without transfer_queue / vLLM-side deps
        return f"verl's v1 trainer cannot be imported here ({exc})"
    for mode, base in list(TRAINER_REGISTRY.items()):
        if mode.startswith("apmpo_"):
            continue
        namespace = {"__module__": __name__, "_apmpo_base_mode": mode}
        cls = type(f"APMPO{base.__name__}", (APMPOTrainerMixin, base), namespace)
        register_trainer(f"apmpo_{mode}")(cls)
    return None


TRAINER_IMPORT_ERROR: str | None = _register_trainers()
"""None when the ``apmpo_*`` trainer modes are registered, else why they are not."""

"""Policy objectives of APMPO (arXiv 2605.04066) and its baselines, behind one signature.

Every objective is a pure function

    fn(log_ratio, advantages, mask, *, normalizer, **hyperparameters) -> (loss, metrics)

on prepared tensors (see ``policy_loss``, the public entry point, which validates the
inputs and computes in float32, or float64 for float64 inputs). The loss is -J, to be
minimised. Symbols follow docs/spec.md:

    r_it   = exp(log_probs - old_log_probs)                       token importance ratio
    rho_it = clip(r_it, 1 - eps_low, 1 + eps_high)
    x_it   = min(r_it, rho_it) if A_i > 0 else max(r_it, rho_it)  pessimistic (PPO) bound
    A_i * x_it = min(r_it * A_i, rho_it * A_i)

- "apmpo": J_i = A_i * M_p(x_i), p = exp(-gamma * mu_R), eps_high = FAC's eps_ada.
           (|A_i| x_it is the spec's phi_it, so this is M_p(phi_i) * sign(A_i).)
- "apmpo_group": our extension (not the paper's method): the same objective with p and
           eps_ada per prompt, from the prompt's own group statistics mu_g, sigma_g
           (``LossSpec.reward_stats_scope == "group"``; docs/spec.md, "Per-prompt APMPO").
- "pmpo":  the same with a fixed p and a fixed eps_high.
- "grpo":  J_i = A_i * mean_t(x_it) (token mean per response; PMPO at p = 1).
- "dapo":  sum over all tokens of A_i * x_it / number of tokens (clip-higher 0.28).
- "gmpo":  log x_it clipped to [-c_low, c_high] in log space (sign-aware, pessimistic),
           J_i = A_i * exp(mean_t log x_it) (PMPO at p -> 0 with log-space bounds).
- "gspo":  s_i = exp(mean_t log r_it); J_i = min(s_i A_i, clip(s_i, 1-3e-4, 1+4e-4) A_i).

J is aggregated by ``apmpo.core.aggregation`` (responses with at least one token, or
tokens), with ``normalizer`` as the batch-wide divisor for micro-batch invariance.
Clipped tokens carry no gradient, exactly as in PPO. The KL penalty is separate
(``apmpo.core.kl.kl_penalty``), as in verl.

Each objective is registered next to its definition with :func:`register_loss` (a
decorator). Its registry entry, a :class:`LossSpec`, is what callers know about it
without running it: its typed hyperparameters (read from the signature: annotations
with their constraints, and defaults), how it aggregates, whether it needs the batch
reward statistics, and its ``controllers``, the p / eps_high / FSS it uses for given
hyperparameters and statistics, and the scope of the reward statistics it takes
(``reward_stats_scope``: the rollout batch's, or each prompt group's). Adding a variant
is one decorated function (see CONTRIBUTING.md).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

import torch
from annotated_types import Ge, Gt, Interval

from apmpo.settings import range_text

from ._checks import (
    check_finite_where,
    check_mask,
    check_range,
    check_rank,
    check_same_shape,
    compute_dtype,
    to_float,
)
from .adaptive import (
    FssVariant,
    PSchedule,
    adaptive_p,
    fac_bound,
    feedback_stability_score,
    normalize_reward_stats,
)
from .advantages import STAT_SCOPES
from .aggregation import AGGREGATIONS, aggregate_rows, aggregate_tokens, masked_row_mean
from .power_mean import log_power_mean

__all__ = [
    "LOSSES",
    "REQUIRED",
    "REWARD_STATISTICS",
    "Hyperparameter",
    "LossSpec",
    "pessimistic_log_ratio",
    "policy_loss",
    "register_loss",
    "resolve_hyperparameters",
]

Metrics = dict[str, float]
LossFn = Callable[..., tuple[torch.Tensor, Metrics]]
Controllers = dict[str, Any]
"""What an objective uses besides the tensors: p, eps_low, eps_high (and for APMPO fss, the rescaled
reward_mean and reward_std), floats or [N] tensors."""

# Hyperparameter types: the annotation states the allowed values (checked when a configuration
# is validated; the functions check them again for direct callers).
NonNegative = Annotated[float, Ge(0)]
Positive = Annotated[float, Gt(0)]
LowerClip = Annotated[float, Interval(ge=0, lt=1)]
"""eps_low: the lower clip bound 1 - eps_low must stay positive."""
Statistic = float | torch.Tensor
"""A batch reward statistic: a float (batch scope) or an [N] tensor (per-group scope)."""
ClipSchedule = Literal["fac", "fixed"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Marks a hyperparameter without a default (e.g. PMPO's p)."""

REWARD_STATISTICS = ("reward_mean", "reward_std", "reward_range")
"""Hyperparameters that describe the rollout batch's rewards; a trainer fills them in."""


@dataclass(frozen=True)
class Hyperparameter:
    """One keyword argument of an objective, read from its signature."""

    name: str
    """Argument name."""
    annotation: Any
    """Its type, with the allowed range as ``annotated_types`` constraints (e.g. ``Annotated[float, Ge(0)]``)."""
    default: Any
    """Its default, or ``REQUIRED``."""

    def allowed(self) -> str:
        """The allowed values in words, read from the annotation (e.g. "a number >= 0", "one of: exp, linear")."""
        return _describe_type(self.annotation)


_BOUNDS = ("gt", "ge", "lt", "le")


def _describe_type(annotation: Any) -> str:
    """``Annotated[float, Ge(0)]`` -> "a number >= 0" (ranges as in validation errors: ``range_text``); Literal -> "one of: ..."; Optional adds "or null"."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin is Annotated:
        bounds = {key: getattr(m, key) for m in args[1:] for key in _BOUNDS if getattr(m, key, None) is not None}
        return f"{_describe_type(args[0])} {range_text(bounds)}".strip()
    if args and type(None) in args and origin is not tuple:
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_describe_type(a) for a in rest) + " or null"
    if annotation is float:
        return "a number"
    if annotation is int:
        return "an integer"
    return str(annotation).replace("typing.", "")


@dataclass(frozen=True)
class LossSpec:
    """A registered objective: what a caller can know about it without running it."""

    name: str
    """Registry key."""
    fn: LossFn
    """The pure loss function (prepared tensors, hyperparameters) -> (loss, metrics)."""
    aggregation: str
    """"response" or "token": what ``normalizer`` counts."""
    hyperparameters: Mapping[str, Hyperparameter] = field(default_factory=dict)
    """Accepted hyperparameters (``normalizer`` excluded), in signature order."""
    needs_reward_stats: bool = False
    """True when the caller must pass the rollout batch's reward_mean and reward_std."""
    controllers: Callable[..., Controllers] | None = None
    """``controllers(**hyperparameters) -> {"p", "eps_low", "eps_high", ...}``: the values the objective uses,
    from its hyperparameters (with the reward statistics for APMPO), without tensors."""
    summary: str = ""
    """One line for listings."""
    reward_stats_scope: str = "batch"
    """With ``needs_reward_stats``: the statistics the caller computes
    (``apmpo.reward_statistics(rewards, group_size=G, scope=...)``) and passes: "batch" (one mu_R, sigma_R
    for the rollout batch, as numbers; the paper) or "group" ([N] tensors, each response its own prompt
    group's mean and std; ``apmpo_group``)."""
    single_update_equals: str | None = None
    """The objective whose gradient this one's equals exactly when every ratio is 1 (one optimizer
    update per rollout batch: pi_old = pi_theta), or None where it stays itself. Drives the start-up
    warning (``apmpo.core.schedule``); proved in tests/core/test_schedule.py."""

    @property
    def defaults(self) -> dict[str, Any]:
        """Hyperparameter -> default (``REQUIRED`` where there is none)."""
        return {name: hp.default for name, hp in self.hyperparameters.items()}


LOSSES: dict[str, LossSpec] = {}
"""The registry: objective name -> :class:`LossSpec`."""


def _hyperparameters(fn: LossFn) -> dict[str, Hyperparameter]:
    """The keyword-only arguments of ``fn`` but ``normalizer``, with their (evaluated) annotations."""
    hints = inspect.get_annotations(fn, eval_str=True)
    return {
        name: Hyperparameter(name, hints.get(name, Any), parameter.default)
        for name, parameter in inspect.signature(fn).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "normalizer"
    }


def register_loss(
    spec_or_name: LossSpec | str,
    *,
    aggregation: str = "response",
    needs_reward_stats: bool = False,
    controllers: Callable[..., Controllers] | None = None,
    summary: str = "",
    reward_stats_scope: str = "batch",
    signature: LossFn | None = None,
    single_update_equals: str | None = None,
) -> Any:
    """Add an objective to ``LOSSES`` (the one place names map to functions).

    As a decorator, next to the function::

        @register_loss("grpo", controllers=ppo_controllers, summary="clipped surrogate")
        def grpo_loss(log_ratio, advantages, mask, *, normalizer=None, eps_low: LowerClip = 0.2, ...): ...

    The hyperparameters are read from the function's keyword-only arguments, or from those
    of ``signature``: a variant that takes exactly another objective's hyperparameters
    (``apmpo_group``: apmpo's) names it instead of repeating them. A ready
    :class:`LossSpec` may be passed instead of a name. ``single_update_equals`` names the
    objective whose gradient this one's equals at one update per rollout batch (every ratio
    1), for the start-up warning (``apmpo.core.schedule``); leave it None unless proved in
    tests/core/test_schedule.py.
    """
    if isinstance(spec_or_name, LossSpec):
        return _add(spec_or_name)

    def decorate(fn: LossFn) -> LossFn:
        _add(
            LossSpec(
                spec_or_name,
                fn,
                aggregation,
                _hyperparameters(signature or fn),
                needs_reward_stats=needs_reward_stats,
                controllers=controllers,
                summary=summary,
                reward_stats_scope=reward_stats_scope,
                single_update_equals=single_update_equals,
            )
        )
        return fn

    return decorate


def _add(spec: LossSpec) -> LossSpec:
    if spec.aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation: must be 'response' or 'token', got {spec.aggregation!r}")
    if spec.reward_stats_scope not in STAT_SCOPES:
        raise ValueError(
            f"reward_stats_scope: must be one of {', '.join(STAT_SCOPES)}, got {spec.reward_stats_scope!r}"
        )
    LOSSES[spec.name] = spec
    return spec


# --------------------------------------------------------------------------- pieces


def pessimistic_log_ratio(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    log_low: float | torch.Tensor,
    log_high: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log x = min(log r, clip(log r)) where A > 0, max(...) where A <= 0.

    Args:
        log_ratio: [N, T] log r.
        advantages: [N].
        log_low, log_high: log-space clip bounds (floats, or [N] tensors), log_low <= 0 <= log_high.

    Returns:
        (log_x [N, T], upper clip binding [N, T] bool, lower clip binding [N, T] bool).
        A binding clip is one that removes the token's gradient.
    """
    low, high = _as_column(log_low, log_ratio), _as_column(log_high, log_ratio)
    if isinstance(low, torch.Tensor) != isinstance(high, torch.Tensor):  # clamp takes two numbers or two tensors
        low, high = (torch.as_tensor(b, dtype=log_ratio.dtype, device=log_ratio.device) for b in (low, high))
    clipped = torch.clamp(log_ratio, low, high)  # type: ignore[arg-type]  # two floats or two tensors  # [N, T] log rho
    positive = (advantages > 0)[:, None]  # [N, 1]
    negative = (advantages < 0)[:, None]
    log_x = torch.where(positive, torch.minimum(log_ratio, clipped), torch.maximum(log_ratio, clipped))
    hit_high = positive & (log_ratio > high)  # [N, T]
    hit_low = negative & (log_ratio < low)
    return log_x, hit_high, hit_low


def _as_column(bound: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A float stays a float; a per-row [N] bound becomes an [N, 1] tensor."""
    if not isinstance(bound, torch.Tensor):
        return float(bound)
    bound = bound.to(dtype=like.dtype, device=like.device)
    return bound[:, None] if bound.dim() == 1 else bound


def _check_clip(eps_low: float | torch.Tensor, eps_high: float | torch.Tensor) -> None:
    """The PPO clip range [1 - eps_low, 1 + eps_high]: 0 <= eps_low < 1, eps_high >= 0."""
    check_range("eps_low", eps_low, 0.0, 1.0, high_inclusive=False)
    check_range("eps_high", eps_high, 0.0)


def _ppo_log_bounds(eps_low: float | torch.Tensor, eps_high: float | torch.Tensor) -> tuple[Any, Any]:
    """log(1 - eps_low), log(1 + eps_high) of bounds checked by the objective's controllers."""
    log_low = torch.log1p(-eps_low) if isinstance(eps_low, torch.Tensor) else math.log1p(-eps_low)
    log_high = torch.log1p(eps_high) if isinstance(eps_high, torch.Tensor) else math.log1p(eps_high)
    return log_low, log_high


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0-d mean of ``values`` over ``mask`` (0 when the mask is empty); stays on device."""
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / mask.sum().clamp(min=1).to(values.dtype)


def _token_metrics(
    log_ratio: torch.Tensor, mask: torch.Tensor, hit_high: torch.Tensor, hit_low: torch.Tensor
) -> Metrics:
    """Clip fractions (over valid tokens), mean ratio and the k3 estimate of KL(old || new).

    One device-to-host transfer for all four numbers.
    """
    lr = log_ratio.detach()
    ratio = torch.exp(lr)
    values = torch.stack(
        [
            _masked_mean(hit_high.to(lr.dtype), mask),
            _masked_mean(hit_low.to(lr.dtype), mask),
            _masked_mean(ratio, mask),
            _masked_mean(ratio - 1.0 - lr, mask),
        ]
    ).tolist()
    return dict(zip(("clip_frac_high", "clip_frac_low", "ratio_mean", "approx_kl"), values))


def _scalar_metric(value: float | torch.Tensor) -> float:
    return float(value.float().mean()) if isinstance(value, torch.Tensor) else float(value)


def _controller_metrics(controllers: Controllers, rows: torch.Tensor | None = None) -> Metrics:
    """The controllers as logged metrics; a per-row [N] tensor is reported by its mean over ``rows``
    (bool [N]: the responses that carry a gradient; all rows when None or when none does)."""
    if rows is None or not bool(rows.any()):
        return {key: _scalar_metric(value) for key, value in controllers.items()}
    return {
        key: float(value[rows].float().mean()) if isinstance(value, torch.Tensor) and value.dim() == 1 else float(value)
        for key, value in controllers.items()
    }


# --------------------------------------------------------------------------- controllers


def ppo_controllers(*, eps_low: float, eps_high: float, **_: Any) -> Controllers:
    """A token clipped surrogate with fixed bounds [1 - eps_low, 1 + eps_high] (p = 1: token mean)."""
    _check_clip(eps_low, eps_high)
    return {"p": 1.0, "eps_low": eps_low, "eps_high": eps_high}


def pmpo_controllers(*, p: float, eps_low: float, eps_high: float, **_: Any) -> Controllers:
    """PMPO: a fixed exponent p > 0 and fixed clip bounds."""
    check_range("p", p, 0.0, low_inclusive=False)
    return {**ppo_controllers(eps_low=eps_low, eps_high=eps_high), "p": p}


def gmpo_controllers(*, clip_log_low: float, clip_log_high: float, **_: Any) -> Controllers:
    """GMPO: the geometric mean (p = 0); the log-space bounds as ratio-space eps for comparison."""
    check_range("clip_log_low", clip_log_low, 0.0)
    check_range("clip_log_high", clip_log_high, 0.0)
    return {"p": 0.0, "eps_low": -math.expm1(-clip_log_low), "eps_high": math.expm1(clip_log_high)}


def apmpo_controllers(
    *,
    reward_mean: Statistic,
    reward_std: Statistic,
    gamma: float,
    eps_low: float,
    eps_min: float,
    eps_max: float,
    delta: float,
    p_schedule: PSchedule,
    p: float | None,
    clip_schedule: str,
    eps_high: float | None,
    fss: FssVariant,
    reward_range: tuple[float, float] | None,
    **_: Any,
) -> Controllers:
    """APMPO: p = exp(-gamma * mu_R) and eps_high = FAC's eps_ada from (mu_R, sigma_R), and the FSS they come from.

    Every hyperparameter is given (the defaults are the loss's, merged by
    :func:`resolve_hyperparameters`; controllers declare none of their own).
    The statistics are rescaled from ``reward_range`` first; the returned ``reward_mean``
    and ``reward_std`` are the rescaled ones. Floats give floats, [N] tensors give [N] tensors.
    """
    if clip_schedule not in ("fac", "fixed"):
        raise ValueError(f"clip_schedule: unknown schedule {clip_schedule!r}; known: fac, fixed")
    mean, std = normalize_reward_stats(reward_mean, reward_std, reward_range)
    p_value = adaptive_p(mean, gamma, p_schedule, p)
    score = feedback_stability_score(mean, std, delta, fss)
    if clip_schedule == "fac":
        check_range("eps_min", eps_min, 0.0)
        check_range("eps_max", eps_max, 0.0)
        if eps_max < eps_min:
            raise ValueError(f"eps_max: must be >= eps_min ({eps_min}), got {eps_max}")
        eps_high_value: Statistic = fac_bound(score, eps_min, eps_max)
    elif eps_high is None:
        raise ValueError("eps_high: clip_schedule 'fixed' needs eps_high")
    else:
        eps_high_value = eps_high
    _check_clip(eps_low, eps_high_value)
    return {
        "p": p_value,
        "eps_low": eps_low,
        "eps_high": eps_high_value,
        "fss": score,
        "reward_mean": mean,
        "reward_std": std,
    }


# --------------------------------------------------------------------------- objectives


def _power_mean_objective(
    log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, normalizer: float | None, c: Controllers
) -> tuple[torch.Tensor, Metrics]:
    """J_i = A_i * M_p(x_i) with the controllers ``c`` (p, eps_low, eps_high: floats or [N] tensors); PMPO and APMPO.

    Per-row controllers (``apmpo_group``) are logged as their mean over the responses that carry a
    gradient (A_i != 0, at least one token): a group whose rewards are all equal has A_i = 0 and
    contributes nothing, whatever its p_g and eps_ada,g.
    """
    check_range("p", c["p"], 0.0, low_inclusive=False)
    log_low, log_high = _ppo_log_bounds(c["eps_low"], c["eps_high"])
    log_x, hit_high, hit_low = pessimistic_log_ratio(log_ratio, advantages, log_low, log_high)
    j_rows = advantages * torch.exp(log_power_mean(log_x, mask, c["p"]))  # [N]
    loss = -aggregate_rows(j_rows, mask, normalizer)
    informative = (advantages != 0) & mask.any(-1)  # [N] rows that carry a gradient
    return loss, {**_token_metrics(log_ratio, mask, hit_high, hit_low), **_controller_metrics(c, informative)}


@register_loss(
    "apmpo",
    needs_reward_stats=True,
    controllers=apmpo_controllers,
    summary="adaptive power mean (p from mu_R) + FAC clip",
    single_update_equals="grpo",
)
def apmpo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    reward_mean: Statistic = REQUIRED,
    reward_std: Statistic = REQUIRED,
    gamma: NonNegative = 0.8,
    eps_low: LowerClip = 0.2,
    eps_min: NonNegative = 0.2,
    eps_max: NonNegative = 0.4,
    delta: Positive = 1e-6,
    p_schedule: PSchedule = "exp",
    p: Positive | None = None,
    clip_schedule: ClipSchedule = "fac",
    eps_high: NonNegative | None = None,
    fss: FssVariant = "ratio",
    reward_range: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """APMPO (Huang et al., https://arxiv.org/abs/2605.04066; docs/spec.md): PMPO with p = exp(-gamma * mu_R)
    and FAC's eps_ada = eps_min + (eps_max - eps_min) tanh(FSS) as the upper clip bound.

    Ablations are settings: ``p_schedule`` "linear" or "fixed" (with ``p``; p = 1 is
    "FAC only"), ``clip_schedule="fixed"`` (with ``eps_high``; "PMPO only"), ``fss``
    "mean" or "inverse_std". reward_mean/reward_std are the rollout batch's statistics
    (floats or one-element tensors; per-prompt [N] statistics are ``apmpo_group``);
    ``reward_range`` declares rewards outside [0, 1].
    """
    c = apmpo_controllers(
        reward_mean=_batch_statistic("reward_mean", reward_mean),
        reward_std=_batch_statistic("reward_std", reward_std),
        gamma=gamma,
        eps_low=eps_low,
        eps_min=eps_min,
        eps_max=eps_max,
        delta=delta,
        p_schedule=p_schedule,
        p=p,
        clip_schedule=clip_schedule,
        eps_high=eps_high,
        fss=fss,
        reward_range=reward_range,
    )
    return _power_mean_objective(log_ratio, advantages, mask, normalizer, c)


@register_loss(
    "apmpo_group",
    needs_reward_stats=True,
    reward_stats_scope="group",
    controllers=apmpo_controllers,
    signature=apmpo_loss,
    summary="APMPO with p and eps_ada per prompt from its group's rewards (extension)",
    single_update_equals="grpo",
)
def apmpo_group_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    reward_mean: torch.Tensor = REQUIRED,
    reward_std: torch.Tensor = REQUIRED,
    **hyperparameters: Any,
) -> tuple[torch.Tensor, Metrics]:
    """Per-prompt APMPO: our extension of APMPO (https://arxiv.org/abs/2605.04066), not the paper's method
    (docs/spec.md, "Per-prompt APMPO"): p_g and eps_ada,g from each response's own group,
    p_g = exp(-gamma * mu_g), eps_ada,g = eps_min + (eps_max - eps_min) tanh(mu_g / (sigma_g + delta)).

    reward_mean/reward_std are [N] tensors (``apmpo.reward_statistics(rewards, group_size=G,
    scope="group")``); the other hyperparameters are apmpo's, same names and defaults (the
    registry reads them from ``apmpo_loss``; :func:`policy_loss` passes every one). A group
    whose rewards are all equal (sigma_g = 0) has A_i = 0 and contributes nothing; the metrics
    p, eps_high, fss, reward_mean and reward_std are averaged over the responses that carry a
    gradient (A_i != 0, at least one token), over all rows if none does.
    """
    c = apmpo_controllers(
        reward_mean=_row_statistic("reward_mean", reward_mean, log_ratio),
        reward_std=_row_statistic("reward_std", reward_std, log_ratio),
        **hyperparameters,
    )
    return _power_mean_objective(log_ratio, advantages, mask, normalizer, c)


def _batch_statistic(name: str, value: Statistic) -> float:
    """A batch-scope statistic as a python float; [N] per-row statistics are refused, naming the right objective."""
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        raise ValueError(
            f"{name}: 'apmpo' uses the rollout batch's statistics (a number), got a tensor of shape "
            f"{tuple(value.shape)}; per-prompt statistics are the 'apmpo_group' objective"
        )
    return to_float(name, value)


def _row_statistic(name: str, value: Statistic, log_ratio: torch.Tensor) -> torch.Tensor:
    """A per-row statistic: an [N] tensor matching the rows of ``log_ratio``, checked and cast."""
    n = log_ratio.shape[0]
    if not isinstance(value, torch.Tensor) or value.dim() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"{name}: 'apmpo_group' needs per-group statistics of shape [N] = ({n},) "
            f"(apmpo.reward_statistics(rewards, group_size=G, scope='group')), got {shape}; "
            "the paper's batch statistics are the 'apmpo' objective"
        )
    if value.shape != (n,):
        raise ValueError(f"{name}: per-group statistics must have shape [N] = ({n},), got {tuple(value.shape)}")
    check_finite_where(name, value)
    return value.detach().to(device=log_ratio.device, dtype=log_ratio.dtype)


@register_loss("pmpo", controllers=pmpo_controllers, summary="power mean with a fixed p", single_update_equals="grpo")
def pmpo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    p: Positive = REQUIRED,
    eps_low: LowerClip = 0.2,
    eps_high: NonNegative = 0.2,
) -> tuple[torch.Tensor, Metrics]:
    """PMPO (APMPO's power-mean objective, https://arxiv.org/abs/2605.04066; docs/spec.md, "PMPO") with a fixed p."""
    c = pmpo_controllers(p=p, eps_low=eps_low, eps_high=eps_high)
    return _power_mean_objective(log_ratio, advantages, mask, normalizer, c)


@register_loss("grpo", controllers=ppo_controllers, summary="clipped surrogate, token mean per response")
def grpo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    eps_low: LowerClip = 0.2,
    eps_high: NonNegative = 0.2,
) -> tuple[torch.Tensor, Metrics]:
    """GRPO (Shao et al., DeepSeekMath, https://arxiv.org/abs/2402.03300; docs/spec.md, "Baselines").

    Token clipped surrogate, token mean per response, mean over responses: PMPO at p = 1.
    """
    c = ppo_controllers(eps_low=eps_low, eps_high=eps_high)
    log_low, log_high = _ppo_log_bounds(c["eps_low"], c["eps_high"])
    log_x, hit_high, hit_low = pessimistic_log_ratio(log_ratio, advantages, log_low, log_high)
    j_rows = advantages * masked_row_mean(torch.exp(log_x), mask)  # [N]
    loss = -aggregate_rows(j_rows, mask, normalizer)
    return loss, {**_token_metrics(log_ratio, mask, hit_high, hit_low), **_controller_metrics(c)}


@register_loss("dapo", aggregation="token", controllers=ppo_controllers, summary="clip-higher, token-level aggregation")
def dapo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    eps_low: LowerClip = 0.2,
    eps_high: NonNegative = 0.28,
) -> tuple[torch.Tensor, Metrics]:
    """DAPO (Yu et al., https://arxiv.org/abs/2503.14476; docs/spec.md, "Baselines"): clip-higher token
    surrogate, summed over all tokens / number of tokens."""
    c = ppo_controllers(eps_low=eps_low, eps_high=eps_high)
    log_low, log_high = _ppo_log_bounds(c["eps_low"], c["eps_high"])
    log_x, hit_high, hit_low = pessimistic_log_ratio(log_ratio, advantages, log_low, log_high)
    token_j = advantages[:, None] * torch.exp(log_x)  # [N, T]
    loss = -aggregate_tokens(token_j, mask, "token", normalizer)
    return loss, {**_token_metrics(log_ratio, mask, hit_high, hit_low), **_controller_metrics(c)}


@register_loss(
    "gmpo", controllers=gmpo_controllers, summary="geometric mean, log-space clip", single_update_equals="grpo"
)
def gmpo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    clip_log_low: NonNegative = 0.4,
    clip_log_high: NonNegative = 0.4,
) -> tuple[torch.Tensor, Metrics]:
    """GMPO (Zhao et al., https://arxiv.org/abs/2507.20673; docs/spec.md, "Baselines"): sign-aware log-space
    clip to [-clip_log_low, clip_log_high], geometric mean over tokens (PMPO at p -> 0)."""
    c = gmpo_controllers(clip_log_low=clip_log_low, clip_log_high=clip_log_high)
    log_x, hit_high, hit_low = pessimistic_log_ratio(log_ratio, advantages, -clip_log_low, clip_log_high)
    j_rows = advantages * torch.exp(log_power_mean(log_x, mask, 0.0))  # [N]
    loss = -aggregate_rows(j_rows, mask, normalizer)
    return loss, {**_token_metrics(log_ratio, mask, hit_high, hit_low), **_controller_metrics(c)}


@register_loss(
    "gspo", controllers=ppo_controllers, summary="sequence-level ratio, narrow clip", single_update_equals="grpo"
)
def gspo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalizer: float | None = None,
    eps_low: LowerClip = 3e-4,
    eps_high: NonNegative = 4e-4,
) -> tuple[torch.Tensor, Metrics]:
    """GSPO (Zheng et al., https://arxiv.org/abs/2507.18071; docs/spec.md, "Baselines"): sequence ratio
    exp(token-mean log r), PPO surrogate with a very narrow clip."""
    c = ppo_controllers(eps_low=eps_low, eps_high=eps_high)
    log_low, log_high = _ppo_log_bounds(c["eps_low"], c["eps_high"])
    seq_log_ratio = masked_row_mean(log_ratio, mask)[:, None]  # [N, 1]
    log_s, hit_high, hit_low = pessimistic_log_ratio(seq_log_ratio, advantages, log_low, log_high)
    j_rows = advantages * torch.exp(log_s[:, 0])  # [N]
    loss = -aggregate_rows(j_rows, mask, normalizer)
    has_tokens = mask.any(-1)[:, None]  # [N, 1]
    metrics = _token_metrics(log_ratio, mask, torch.zeros_like(mask), torch.zeros_like(mask))
    metrics.update(
        clip_frac_high=float(_masked_mean(hit_high.to(log_ratio.dtype), has_tokens)),
        clip_frac_low=float(_masked_mean(hit_low.to(log_ratio.dtype), has_tokens)),
        **_controller_metrics(c),
    )
    return loss, metrics


# --------------------------------------------------------------------------- entry points


def resolve_hyperparameters(name: str, hyperparameters: Mapping[str, Any]) -> tuple[LossSpec, dict[str, Any]]:
    """Look up ``name`` and merge ``hyperparameters`` over its defaults, with clear errors."""
    if name not in LOSSES:
        raise ValueError(f"name: unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    spec = LOSSES[name]
    allowed = set(spec.hyperparameters) | {"normalizer"}
    unknown = sorted(set(hyperparameters) - allowed)
    if unknown:
        raise ValueError(
            f"{name}: unknown hyperparameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}"
        )
    merged = {**spec.defaults, **hyperparameters}
    missing = sorted(k for k, v in merged.items() if v is REQUIRED)
    if missing:
        raise ValueError(f"{name}: missing required hyperparameter(s) {', '.join(missing)}")
    return spec, merged


def policy_loss(
    name: str,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    **hyperparameters: Any,
) -> tuple[torch.Tensor, Metrics]:
    """Compute a registered policy objective; returns (loss = -J, metrics).

    Args:
        name: a key of ``LOSSES``: "apmpo", "apmpo_group", "pmpo", "grpo", "dapo", "gmpo", "gspo".
        log_probs: [N, T] log pi_theta of the sampled tokens (with gradient).
        old_log_probs: [N, T] log pi_old of the same tokens (no gradient is taken).
        advantages: [N] one advantage per response.
        mask: [N, T] 1 on response tokens, 0 on padding. Masked positions may hold any
            value, NaN included; they never change the loss or the gradient.
        **hyperparameters: the loss's own (see ``LOSSES[name].defaults``), e.g. for
            "apmpo": reward_mean, reward_std (numbers; [N] tensors for "apmpo_group"), gamma=0.8,
            eps_low=0.2, eps_min=0.2, eps_max=0.4, delta=1e-6; for "pmpo": p, eps_low, eps_high; for "grpo":
            eps_low=0.2, eps_high=0.2. Every loss accepts ``normalizer``: the divisor of
            the summed objective over the whole batch (responses with a token for
            response-level losses, tokens for "dapo"); pass the full batch's count to
            each micro-batch and their losses add up to the full-batch loss.

    Returns:
        loss: 0-d float32 tensor (float64 for float64 inputs) = -(sum_i J_i) / normalizer.
        metrics: python floats: clip_frac_low, clip_frac_high, p, eps_low, eps_high,
            approx_kl (k3 estimate of KL(old || new) per token), ratio_mean, and for
            "apmpo" / "apmpo_group" fss, reward_mean, reward_std.
    """
    spec, hp = resolve_hyperparameters(name, hyperparameters)
    log_ratio, adv, mask_b = prepare_inputs(log_probs, old_log_probs, advantages, mask)
    return spec.fn(log_ratio, adv, mask_b, **hp)


def prepare_inputs(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate shapes and values; return (log_ratio [N, T] with pads zeroed, advantages [N], bool mask)."""
    check_rank("log_probs", log_probs, 2)
    check_rank("old_log_probs", old_log_probs, 2)
    check_rank("mask", mask, 2)
    check_rank("advantages", advantages, 1)
    check_same_shape("old_log_probs", old_log_probs, "log_probs", log_probs)
    check_same_shape("mask", mask, "log_probs", log_probs)
    if advantages.shape[0] != log_probs.shape[0]:
        raise ValueError(
            f"advantages: length {advantages.shape[0]} does not match the {log_probs.shape[0]} rows of log_probs"
        )
    mask_b = check_mask("mask", mask)
    check_finite_where("log_probs", log_probs.detach(), mask_b)
    check_finite_where("old_log_probs", old_log_probs.detach(), mask_b)
    check_finite_where("advantages", advantages.detach())
    dtype = compute_dtype(log_probs, old_log_probs)
    diff = log_probs.to(dtype) - old_log_probs.detach().to(dtype)  # [N, T]
    log_ratio = torch.where(mask_b, diff, torch.zeros((), dtype=dtype, device=diff.device))
    return log_ratio, advantages.detach().to(dtype), mask_b

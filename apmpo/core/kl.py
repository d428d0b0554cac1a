"""KL penalty to a reference policy, per token, aggregated like the policy term.

With d_t = log pi_ref(o_t) - log pi_theta(o_t) on tokens sampled from pi_theta:

    k1 = -d                      unbiased, high variance
    k2 = d^2 / 2                 biased, low variance
    k3 = exp(d) - d - 1          unbiased, non-negative (the spec's choice, as GRPO)

The objective subtracts beta * KL (spec: J - beta * KL(pi_theta || pi_ref)), so the
trainer adds ``beta * kl`` to the policy loss. Departure, for stability only: d is
clamped to [-KL_CLAMP, KL_CLAMP] before exponentiation (tokens beyond it get no KL
gradient); the bound is far outside what a trust-region update produces.
"""

from __future__ import annotations

import torch

from ._checks import (
    check_finite_where,
    check_mask,
    check_rank,
    check_same_shape,
    compute_dtype,
)
from .aggregation import AGGREGATIONS, aggregate_tokens

__all__ = ["KL_ESTIMATORS", "KL_CLAMP", "kl_per_token", "kl_penalty"]

KL_CLAMP = 20.0


def _k1(d: torch.Tensor) -> torch.Tensor:
    return -d


def _k2(d: torch.Tensor) -> torch.Tensor:
    return 0.5 * d * d


def _k3(d: torch.Tensor) -> torch.Tensor:
    return torch.expm1(d) - d


KL_ESTIMATORS = {"k1": _k1, "k2": _k2, "k3": _k3}


def kl_per_token(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL estimate [N, T] (no masking, no validation)."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator: unknown KL estimator {estimator!r}; known: {', '.join(KL_ESTIMATORS)}")
    d = (ref_log_probs.detach() - log_probs).clamp(-KL_CLAMP, KL_CLAMP)
    return KL_ESTIMATORS[estimator](d)


def kl_penalty(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    mask: torch.Tensor,
    estimator: str = "k3",
    aggregation: str = "response",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(pi_theta || pi_ref) estimate aggregated like the policy term.

    Args:
        log_probs: [N, T] log pi_theta of the sampled tokens (with gradient).
        ref_log_probs: [N, T] log pi_ref of the same tokens (no gradient is taken).
        mask: [N, T] 1 on response tokens.
        estimator: "k1", "k2" or "k3" (spec).
        aggregation: "response" (token mean per response, mean over responses) or
            "token" (mean over all tokens) -- use the policy loss's ``LossSpec.aggregation``.
        normalizer: the batch-wide divisor, as for ``policy_loss``.

    Returns:
        (kl, {"kl": value}) with kl a 0-d tensor to multiply by beta and add to the loss.
    """
    check_rank("log_probs", log_probs, 2)
    check_rank("ref_log_probs", ref_log_probs, 2)
    check_same_shape("ref_log_probs", ref_log_probs, "log_probs", log_probs)
    check_same_shape("mask", mask, "log_probs", log_probs)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation: unknown mode {aggregation!r}; known: {', '.join(AGGREGATIONS)}")
    mask_b = check_mask("mask", mask)
    check_finite_where("log_probs", log_probs.detach(), mask_b)
    check_finite_where("ref_log_probs", ref_log_probs.detach(), mask_b)
    dtype = compute_dtype(log_probs, ref_log_probs)
    zero = torch.zeros((), dtype=dtype, device=log_probs.device)
    lp = torch.where(mask_b, log_probs.to(dtype), zero)  # [N, T] pads -> 0
    ref = torch.where(mask_b, ref_log_probs.detach().to(dtype), zero)
    kl = aggregate_tokens(kl_per_token(lp, ref, estimator), mask_b, aggregation, normalizer)
    return kl, {"kl": float(kl.detach())}

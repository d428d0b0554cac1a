"""Power mean over the valid tokens of each response, in log space.

    M_p(x) = ( (1/T) * sum_t x_t^p )^(1/p),   x_t > 0,  p > 0

APMPO (arXiv 2605.04066) aggregates token-level clipped ratios with M_p; p = 1 is the
arithmetic mean (GRPO), p -> 0 the geometric mean (GMPO).

We never form x^p. With y_t = log x_t and y_max the row maximum over valid tokens,

    log M_p = y_max + log1p( mean_t expm1(p * (y_t - y_max)) ) / p

Every exponent p * (y_t - y_max) is <= 0, so nothing overflows for any log-ratio, the
log1p argument stays in (-1 + 1/T, 0], and as p -> 0 the second term tends to
mean_t(y_t - y_max) without cancellation (all terms share a sign). Below
``GEOMETRIC_P`` the limit itself, mean_t(y_t), is used, so p = 0 is exact and tiny p
never divides by a subnormal number.
"""

from __future__ import annotations

import torch

__all__ = ["GEOMETRIC_P", "log_power_mean", "power_mean"]

GEOMETRIC_P = 1e-12
"""Exponents below this use the geometric mean exactly (the approximation error is O(p))."""


def log_power_mean(log_x: torch.Tensor, mask: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """log M_p of exp(log_x) over the tokens where ``mask`` is true, one value per row.

    Args:
        log_x: [N, T] log of the positive values.
        mask: [N, T] bool, true on valid tokens. Values at masked positions are ignored
            (even NaN/inf) and receive zero gradient.
        p: exponent >= 0, a float or a tensor of shape [N] (one exponent per row);
            p < GEOMETRIC_P gives the geometric mean.

    Returns:
        [N] log power means; 0 for rows without a valid token.
    """
    mask = mask.bool()
    counts = mask.sum(dim=-1)  # [N]
    safe = torch.where(mask, log_x, torch.zeros((), dtype=log_x.dtype))  # [N, T] pads -> 0
    y_max = torch.where(mask, safe, torch.full((), -torch.inf, dtype=log_x.dtype)).amax(dim=-1)
    y_max = torch.where(counts > 0, y_max, torch.zeros_like(y_max)).detach()  # [N]; shift carries no gradient
    shifted = torch.where(mask, safe - y_max[:, None], torch.zeros((), dtype=log_x.dtype))  # [N, T] <= 0
    denom = counts.clamp(min=1).to(log_x.dtype)  # [N]

    p_t = torch.as_tensor(p, dtype=log_x.dtype, device=log_x.device)
    p_row = p_t.expand(log_x.shape[0]) if p_t.dim() == 0 else p_t  # [N]
    geometric = p_row < GEOMETRIC_P  # [N]
    p_safe = torch.where(geometric, torch.ones_like(p_row), p_row)  # [N], avoids 0-division

    mean_expm1 = (torch.expm1(p_safe[:, None] * shifted) * mask).sum(-1) / denom  # [N] in (-1, 0]
    power_term = torch.log1p(mean_expm1) / p_safe  # [N]
    geo_term = shifted.sum(-1) / denom  # [N] mean_t(y_t - y_max)
    out = y_max + torch.where(geometric, geo_term, power_term)  # [N]
    return torch.where(counts > 0, out, torch.zeros_like(out))


def power_mean(x: torch.Tensor, mask: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """M_p(x) over the valid tokens of each row of positive ``x`` ([N, T] -> [N]); 0 for empty rows."""
    mask = mask.bool()
    safe_x = torch.where(mask, x, torch.ones((), dtype=x.dtype))
    out = torch.exp(log_power_mean(torch.log(safe_x), mask, p))
    return torch.where(mask.any(-1), out, torch.zeros_like(out))

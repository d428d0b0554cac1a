"""Group-normalised advantages and rollout-batch reward statistics.

Layout convention (as GRPO): ``rewards`` is [N] with N = B * G, the G responses of each
prompt contiguous: [q0_o1 .. q0_oG, q1_o1 .. q1_oG, ...].

    A_i = (R_i - mean_g(R)) / (std_g(R) + delta)            normalize="group" (GRPO, APMPO)

"batch" normalises by the whole batch's mean and std (REINFORCE++-style baseline),
"none" only subtracts the group mean (Dr. GRPO-style). A group whose rewards are all
equal gets exactly 0, whatever the normalisation (no 0/delta blow-up from rounding).

Our choice where the paper is silent: std is the sample standard deviation (Bessel's
correction, as TRL and verl compute it) unless ``unbiased=False``; delta = 1e-6.

mu_R and sigma_R (spec: "batch reward statistics") are the mean and std of all rewards
in the rollout batch ("batch" scope, the paper) or of each response's own group
("group" scope, the extension the paper names as future work; returns [N] tensors).
They carry no gradient.
"""

from __future__ import annotations

import torch

from ._checks import check_finite_where, check_rank

__all__ = ["ADVANTAGE_NORMALIZATIONS", "STAT_SCOPES", "group_advantages", "reward_statistics"]

ADVANTAGE_NORMALIZATIONS = ("group", "batch", "none")
STAT_SCOPES = ("batch", "group")


def _grouped(rewards: torch.Tensor, group_size: int, name: str = "rewards") -> torch.Tensor:
    check_rank(name, rewards, 1)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: expected a positive integer, got {group_size!r}")
    if rewards.numel() % group_size != 0:
        raise ValueError(
            f"{name}: length {rewards.numel()} is not a multiple of group_size {group_size} "
            "(expected B prompts x G responses, each group contiguous)"
        )
    check_finite_where(name, rewards)
    return rewards.reshape(-1, group_size)  # [B, G]


def _std(x: torch.Tensor, dim: int | None, unbiased: bool) -> torch.Tensor:
    n = x.numel() if dim is None else x.shape[dim]
    if n < 2:
        return torch.zeros_like(x.mean() if dim is None else x.mean(dim=dim, keepdim=True))
    return x.std(dim=dim, keepdim=dim is not None, correction=1 if unbiased else 0)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    normalize: str = "group",
    delta: float = 1e-6,
    unbiased: bool = True,
) -> torch.Tensor:
    """One advantage per response from its reward and its group's rewards.

    Args:
        rewards: [N] rewards, N = B * group_size, groups contiguous.
        group_size: G, the responses sampled per prompt.
        normalize: "group" (divide by the group std, the paper), "batch" (subtract the
            group mean, divide by the batch std) or "none" (subtract the group mean only).
        delta: added to the std before dividing.
        unbiased: sample (True) or population (False) standard deviation.

    Returns:
        [N] advantages (float32, or float64 for float64 rewards); exactly 0 for every
        response of a group whose rewards are all equal.
    """
    if normalize not in ADVANTAGE_NORMALIZATIONS:
        raise ValueError(f"normalize: unknown mode {normalize!r}; known: {', '.join(ADVANTAGE_NORMALIZATIONS)}")
    if not delta > 0:
        raise ValueError(f"delta: must be > 0, got {delta}")
    dtype = torch.float64 if rewards.dtype == torch.float64 else torch.float32
    grouped = _grouped(rewards.detach(), group_size).to(dtype)  # [B, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
    if normalize == "group":
        adv = centred / (_std(grouped, 1, unbiased) + delta)  # [B, G]
    elif normalize == "batch":
        adv = centred / (_std(grouped, None, unbiased) + delta)
    else:
        adv = centred
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)  # [B, 1]
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    return adv.reshape(-1)  # [N]


def reward_statistics(
    rewards: torch.Tensor,
    group_size: int | None = None,
    scope: str = "batch",
    unbiased: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_R, sigma_R) of a rollout batch, detached.

    Args:
        rewards: [N] rewards of the whole rollout batch (all prompts, all responses).
        group_size: G; needed for scope "group".
        scope: "batch" (paper: one mean/std for the batch, 0-d tensors) or "group"
            (each response gets its own group's mean/std, [N] tensors).
        unbiased: sample (True) or population (False) standard deviation.
    """
    if scope not in STAT_SCOPES:
        raise ValueError(f"scope: unknown scope {scope!r}; known: {', '.join(STAT_SCOPES)}")
    dtype = torch.float64 if rewards.dtype == torch.float64 else torch.float32
    if scope == "batch":
        check_rank("rewards", rewards, 1)
        if rewards.numel() == 0:
            raise ValueError("rewards: empty batch")
        check_finite_where("rewards", rewards)
        r = rewards.detach().to(dtype)
        return r.mean(), _std(r, None, unbiased)
    if group_size is None:
        raise ValueError("group_size: required for scope 'group'")
    grouped = _grouped(rewards.detach(), group_size).to(dtype)  # [B, G]
    mean = grouped.mean(dim=1, keepdim=True).expand_as(grouped)  # [B, G]
    std = _std(grouped, 1, unbiased).expand_as(grouped)  # [B, G]
    return mean.reshape(-1), std.reshape(-1)  # [N], [N]

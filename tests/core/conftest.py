import pytest
import torch


def random_batch(n=6, t=9, seed=0, scale=0.3, dtype=torch.float64, empty_row=True, zero_adv=True):
    """log_probs (leaf, requires grad), old_log_probs, advantages, mask with ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    lp = (-torch.rand(n, t, generator=g, dtype=torch.float64) * 3).to(dtype)
    old = (lp.double() + scale * torch.randn(n, t, generator=g, dtype=torch.float64)).to(dtype)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    if empty_row:
        lengths[-1] = 0
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(torch.float32)
    adv = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)
    if zero_adv and n > 2:
        adv[1] = 0.0
    return lp.clone().requires_grad_(True), old, adv, mask


@pytest.fixture
def batch():
    return random_batch()


HP = {
    "apmpo": dict(reward_mean=0.375, reward_std=0.48),
    "apmpo_group": dict(reward_mean=0.375, reward_std=0.48),  # per-row [N] copies: see hyperparameters()
    "pmpo": dict(p=0.6),
    "grpo": {},
    "dapo": {},
    "gmpo": {},
    "gspo": {},
}


def hyperparameters(name, n):
    """HP[name] for a batch of n rows; apmpo_group's statistics become [N] tensors that differ per row
    (groups of 3 rows with means 0.125, 0.375, 0.625, 0.875, ... and stds 0.33 / 0.48 alternating)."""
    hp = dict(HP[name])
    if name == "apmpo_group":
        group = torch.arange(n, dtype=torch.float64) // 3
        hp.update(reward_mean=(0.125 + 0.25 * group) % 1.0, reward_std=torch.where(group % 2 == 0, 0.33, 0.48))
    return hp


def rows_of(hp, rows):
    """hp with its [N] per-row tensors restricted to ``rows`` (a slice or an index)."""
    return {k: v[rows] if isinstance(v, torch.Tensor) and v.dim() == 1 else v for k, v in hp.items()}

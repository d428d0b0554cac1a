"""Property-based checks (hypothesis): finiteness and bounds for any valid input."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import apmpo
from apmpo.core import log_power_mean

floats = st.floats(min_value=-50, max_value=50, allow_nan=False, width=32)


@st.composite
def batches(draw):
    n = draw(st.integers(1, 5))
    t = draw(st.integers(1, 6))
    lr = draw(st.lists(floats, min_size=n * t, max_size=n * t))
    adv = draw(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, t), min_size=n, max_size=n))
    log_ratio = torch.tensor(lr, dtype=torch.float32).reshape(n, t)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return log_ratio, torch.tensor(adv), mask


@settings(max_examples=60, deadline=None)
@given(batch=batches(), name=st.sampled_from(sorted(apmpo.LOSSES)), mu=st.floats(0, 1), sd=st.floats(0, 0.5),
       p=st.floats(1e-6, 1.0))
def test_loss_and_gradient_finite(batch, name, mu, sd, p):
    log_ratio, adv, mask = batch
    lp = log_ratio.clone().requires_grad_(True)
    n = lp.shape[0]
    hp = {"apmpo": dict(reward_mean=mu, reward_std=sd), "pmpo": dict(p=p),
          "apmpo_group": dict(reward_mean=torch.linspace(0, mu, n), reward_std=torch.linspace(sd, 0, n))}.get(name, {})
    loss, metrics = apmpo.policy_loss(name, lp, torch.zeros_like(lp), adv, mask, **hp)
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["clip_frac_low"] <= 1.0 and 0.0 <= metrics["clip_frac_high"] <= 1.0


@settings(max_examples=60, deadline=None)
@given(batch=batches(), p=st.floats(1e-6, 1.0))
def test_power_mean_between_min_and_max(batch, p):
    log_x, _, mask = batch
    out = log_power_mean(log_x, mask, p)
    big = torch.where(mask, log_x, torch.full_like(log_x, -math.inf)).amax(-1)
    small = torch.where(mask, log_x, torch.full_like(log_x, math.inf)).amin(-1)
    has = mask.any(-1)
    assert torch.isfinite(out).all()
    tol = 1e-4 * (1 + big.abs())
    assert bool(((out <= big + tol) | ~has).all()) and bool(((out >= small - tol) | ~has).all())


@settings(max_examples=60, deadline=None)
@given(mu=st.floats(0, 1), sd=st.floats(0, 10), e_min=st.floats(0, 0.5), width=st.floats(0, 0.5))
def test_controllers_in_range(mu, sd, e_min, width):
    p = apmpo.adaptive_p(mu)
    assert math.exp(-0.8) - 1e-12 <= p <= 1.0
    eps = apmpo.fac_clip_high(mu, sd, eps_min=e_min, eps_max=e_min + width)
    assert e_min - 1e-12 <= eps <= e_min + width + 1e-12

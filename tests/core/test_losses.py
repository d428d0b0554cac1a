"""Objectives: hand-computed cases, reductions between them, reference agreement, invariances."""

import math

import pytest
import torch

import apmpo
from apmpo.core import log_power_mean

from .conftest import hyperparameters, random_batch, rows_of
from .reference import reference_loss

LOSS_NAMES = sorted(apmpo.LOSSES)


def one(log_ratios, adv, **kw):
    lr = torch.tensor([log_ratios], dtype=torch.float64)
    return apmpo.policy_loss(kw.pop("name"), lr, torch.zeros_like(lr), torch.tensor([adv], dtype=torch.float64), torch.ones_like(lr), **kw)


# ---------------------------------------------------------------- hand-computed cases

def test_grpo_hand_positive_advantage():
    # r = [1.5, 0.9], A = +1, eps 0.2: x = [min(1.5, 1.2), 0.9] = [1.2, 0.9]; J = 1.05
    loss, m = one([math.log(1.5), math.log(0.9)], 1.0, name="grpo")
    assert loss.item() == pytest.approx(-1.05, abs=1e-12)
    assert m["clip_frac_high"] == pytest.approx(0.5) and m["clip_frac_low"] == 0.0


def test_grpo_hand_negative_advantage():
    # r = [1.5, 0.7], A = -1: x = max(r, clip(r)) = [1.5, 0.8]; J = -1.15; loss = +1.15
    loss, m = one([math.log(1.5), math.log(0.7)], -1.0, name="grpo")
    assert loss.item() == pytest.approx(1.15, abs=1e-12)
    assert m["clip_frac_low"] == pytest.approx(0.5) and m["clip_frac_high"] == 0.0


def test_pmpo_hand():
    # x = [1.2, 0.9], p = 0.5: M = ((sqrt 1.2 + sqrt 0.9) / 2)^2
    loss, m = one([math.log(1.5), math.log(0.9)], 2.0, name="pmpo", p=0.5)
    expected = 2.0 * ((math.sqrt(1.2) + math.sqrt(0.9)) / 2) ** 2
    assert loss.item() == pytest.approx(-expected, abs=1e-12)
    assert m["p"] == 0.5


def test_apmpo_hand():
    # mu = 0.5, sigma = 0.5: p = e^-0.4, FSS = 0.5 / (0.5 + 1e-6), eps_ada = 0.2 + 0.2 tanh(FSS)
    p = math.exp(-0.4)
    eps = 0.2 + 0.2 * math.tanh(0.5 / (0.5 + 1e-6))
    loss, m = one([math.log(1.5), math.log(0.9)], 1.0, name="apmpo", reward_mean=0.5, reward_std=0.5)
    x = [1 + eps, 0.9]
    expected = ((x[0] ** p + x[1] ** p) / 2) ** (1 / p)
    assert loss.item() == pytest.approx(-expected, abs=1e-12)
    assert m["p"] == pytest.approx(p) and m["eps_high"] == pytest.approx(eps)
    assert m["fss"] == pytest.approx(0.5 / (0.5 + 1e-6))


def test_dapo_hand_token_level():
    # resp1 A=+1 r=[1.5, 0.9] -> [1.28, 0.9]; resp2 A=-1 r=[1.5] -> 1.5; (1.28 + 0.9 - 1.5) / 3
    lr = torch.tensor([[math.log(1.5), math.log(0.9)], [math.log(1.5), 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, _ = apmpo.policy_loss("dapo", lr, torch.zeros_like(lr), torch.tensor([1.0, -1.0], dtype=torch.float64), mask)
    assert loss.item() == pytest.approx(-(1.28 + 0.9 - 1.5) / 3, abs=1e-12)


def test_gmpo_hand():
    # log r = [0.5, -0.1], A = +1: clipped to [0.4, -0.1]; J = exp(0.15)
    loss, m = one([0.5, -0.1], 1.0, name="gmpo")
    assert loss.item() == pytest.approx(-math.exp(0.15), abs=1e-12)
    # A = -1: pessimistic is max(log r, clip) = [0.5, -0.1]; J = -exp(0.2)
    loss, _ = one([0.5, -0.1], -1.0, name="gmpo")
    assert loss.item() == pytest.approx(math.exp(0.2), abs=1e-12)


def test_gspo_hand():
    # mean log r = 0.004 -> s = e^0.004 > 1 + 4e-4; A = +1 takes the clipped 1.0004
    loss, m = one([0.01, -0.002], 1.0, name="gspo")
    assert loss.item() == pytest.approx(-1.0004, abs=1e-12)
    assert m["clip_frac_high"] == 1.0


# ---------------------------------------------------------------- reductions

def test_power_mean_at_p1_equals_grpo_value_and_gradient():
    lp, old, adv, mask = random_batch(seed=1, scale=0.4)
    g_loss, _ = apmpo.policy_loss("grpo", lp, old, adv, mask, eps_low=0.2, eps_high=0.3)
    (g_grad,) = torch.autograd.grad(g_loss, lp)
    p_loss, _ = apmpo.policy_loss("pmpo", lp, old, adv, mask, p=1.0, eps_low=0.2, eps_high=0.3)
    (p_grad,) = torch.autograd.grad(p_loss, lp)
    a_loss, _ = apmpo.policy_loss(
        "apmpo", lp, old, adv, mask, reward_mean=0.3, reward_std=0.2, p_schedule="fixed", p=1.0,
        clip_schedule="fixed", eps_high=0.3,
    )
    (a_grad,) = torch.autograd.grad(a_loss, lp)
    torch.testing.assert_close(p_loss, g_loss)
    torch.testing.assert_close(a_loss, g_loss)
    torch.testing.assert_close(p_grad, g_grad)
    torch.testing.assert_close(a_grad, g_grad)


def test_apmpo_zero_reward_gives_p1_and_eps_min():
    lp, old, adv, mask = random_batch(seed=2)
    a_loss, m = apmpo.policy_loss("apmpo", lp, old, adv, mask, reward_mean=0.0, reward_std=0.0)
    g_loss, _ = apmpo.policy_loss("grpo", lp, old, adv, mask)
    assert m["p"] == 1.0 and m["eps_high"] == pytest.approx(0.2)
    torch.testing.assert_close(a_loss, g_loss)


def test_small_p_tends_to_geometric_mean():
    lp, old, adv, mask = random_batch(seed=3, scale=0.5)
    bounds = dict(eps_low=0.2, eps_high=0.3)
    small, _ = apmpo.policy_loss("pmpo", lp, old, adv, mask, p=1e-7, **bounds)
    (g_small,) = torch.autograd.grad(small, lp)
    # explicit geometric mean of the same clipped ratios
    from apmpo.core import pessimistic_log_ratio
    from apmpo.core.losses import prepare_inputs

    log_ratio, a, m = prepare_inputs(lp, old, adv, mask)
    log_x, _, _ = pessimistic_log_ratio(log_ratio, a, math.log(0.8), math.log(1.3))
    geo = torch.where(m, log_x, torch.zeros(())).sum(-1) / m.sum(-1).clamp(min=1)
    j = torch.where(m.any(-1), a * torch.exp(geo), torch.zeros(()))
    expected = -j.sum() / m.any(-1).sum()
    (g_expected,) = torch.autograd.grad(expected, lp)
    torch.testing.assert_close(small, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_small, g_expected, rtol=1e-5, atol=1e-6)


def test_power_mean_monotone_in_p():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 12, generator=g, dtype=torch.float64) * 3 + 0.01
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[2, 7:] = False
    ps = [0.0, 1e-6, 0.01, 0.2, 0.5, 0.8, 1.0, 1.5]
    vals = torch.stack([log_power_mean(torch.log(x), mask, p) for p in ps])  # [P, N]
    assert bool((vals[1:] >= vals[:-1] - 1e-12).all())


# ---------------------------------------------------------------- reference and gradcheck

@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_float64_reference(name, seed):
    lp, old, adv, mask = random_batch(seed=seed, scale=0.4)
    hp = hyperparameters(name, lp.shape[0])
    loss, _ = apmpo.policy_loss(name, lp, old, adv, mask, **hp)
    (grad,) = torch.autograd.grad(loss, lp)
    lp2 = lp.detach().clone().requires_grad_(True)
    ref = reference_loss(name, lp2, old, adv, mask, **hp)
    (ref_grad,) = torch.autograd.grad(ref, lp2)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradcheck(name):
    # small ratios so no token sits exactly on a clip boundary (non-differentiable points)
    lp, old, adv, mask = random_batch(n=4, t=5, seed=5, scale=0.05)

    def f(x):
        return apmpo.policy_loss(name, x, old, adv, mask, **hyperparameters(name, 4))[0]

    assert torch.autograd.gradcheck(f, (lp,), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- invariances

@pytest.mark.parametrize("name", LOSS_NAMES)
def test_padding_invariance(name):
    lp, old, adv, mask = random_batch(seed=6)
    hp = hyperparameters(name, lp.shape[0] + 1)
    loss, _ = apmpo.policy_loss(name, lp, old, adv, mask, **rows_of(hp, slice(0, lp.shape[0])))
    (grad,) = torch.autograd.grad(loss, lp)
    n, t = lp.shape
    # extra padded columns holding garbage (NaN, inf) and an extra all-padding row
    lp_big = torch.full((n + 1, t + 4), float("nan"), dtype=lp.dtype)
    lp_big[:n, :t] = lp.detach()
    lp_big.requires_grad_(True)
    old_big = torch.full((n + 1, t + 4), float("inf"), dtype=old.dtype)
    old_big[:n, :t] = old
    mask_big = torch.zeros(n + 1, t + 4)
    mask_big[:n, :t] = mask
    adv_big = torch.cat([adv, torch.tensor([3.0], dtype=adv.dtype)])
    loss_big, _ = apmpo.policy_loss(name, lp_big, old_big, adv_big, mask_big, **hp)
    (grad_big,) = torch.autograd.grad(loss_big, lp_big)
    torch.testing.assert_close(loss_big, loss)
    torch.testing.assert_close(grad_big[:n, :t], grad)
    assert torch.all(grad_big[n:] == 0) and torch.all(grad_big[:, t:] == 0)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_micro_batch_invariance(name):
    lp, old, adv, mask = random_batch(n=9, t=7, seed=7, scale=0.4)
    spec = apmpo.LOSSES[name]
    hp = hyperparameters(name, lp.shape[0])
    full, _ = apmpo.policy_loss(name, lp, old, adv, mask, **hp)
    (g_full,) = torch.autograd.grad(full, lp)
    normalizer = apmpo.core.default_normalizer(mask.bool(), spec.aggregation)
    total = 0.0
    grad = torch.zeros_like(lp)
    for chunk in (slice(0, 2), slice(2, 3), slice(3, 7), slice(7, 9)):
        part, _ = apmpo.policy_loss(name, lp[chunk], old[chunk], adv[chunk], mask[chunk], normalizer=normalizer,
                                  **rows_of(hp, chunk))
        grad += torch.autograd.grad(part, lp)[0]
        total += part.item()
    assert total == pytest.approx(full.item(), abs=1e-12)
    torch.testing.assert_close(grad, g_full)


# ---------------------------------------------------------------- numerics

@pytest.mark.parametrize("name", LOSS_NAMES)
def test_extreme_log_ratios_are_finite(name):
    g = torch.Generator().manual_seed(8)
    n, t = 8, 16
    old = torch.zeros(n, t)
    lp = (torch.rand(n, t, generator=g) * 100 - 50).requires_grad_(True)  # log-ratios in [-50, 50]
    adv = torch.randn(n, generator=g)
    mask = torch.ones(n, t)
    mask[0, 1:] = 0  # one-token response
    hps = [hyperparameters(name, n)]
    if name == "pmpo":
        hps = [dict(p=p) for p in (1e-6, 1e-3, 0.5, 1.0)]
    for hp in hps:
        loss, m = apmpo.policy_loss(name, lp, old, adv, mask, **hp)
        (grad,) = torch.autograd.grad(loss, lp)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_half_precision_inputs_compute_in_float32(name, dtype):
    lp, old, adv, mask = random_batch(seed=9, dtype=torch.float32)
    lp_h = lp.detach().to(dtype).requires_grad_(True)
    hp = hyperparameters(name, lp.shape[0])
    loss_h, _ = apmpo.policy_loss(name, lp_h, old.to(dtype), adv.to(dtype), mask, **hp)
    assert loss_h.dtype == torch.float32
    (grad_h,) = torch.autograd.grad(loss_h, lp_h)
    assert grad_h.dtype == dtype and torch.isfinite(grad_h.float()).all()
    loss_f, _ = apmpo.policy_loss(name, lp_h.detach().float(), old.to(dtype).float(), adv.to(dtype).float(), mask, **hp)
    torch.testing.assert_close(loss_h, loss_f)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_padding_and_zero_advantages(name):
    lp = torch.zeros(3, 4, requires_grad=True)
    loss, m = apmpo.policy_loss(name, lp, torch.zeros(3, 4), torch.ones(3), torch.zeros(3, 4),
                                **hyperparameters(name, 3))
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.all(grad == 0)
    lp2 = torch.randn(3, 4, requires_grad=True)
    loss, _ = apmpo.policy_loss(name, lp2, lp2.detach() + 0.1, torch.zeros(3), torch.ones(3, 4),
                                **hyperparameters(name, 3))
    (grad,) = torch.autograd.grad(loss, lp2)
    assert loss.item() == 0.0 and torch.all(grad == 0)


def test_per_group_statistics_broadcast():
    lp, old, adv, mask = random_batch(n=6, seed=10)
    mean = torch.tensor([0.25] * 3 + [0.75] * 3, dtype=torch.float64)
    std = torch.tensor([0.5] * 3 + [0.5] * 3, dtype=torch.float64)
    loss, m = apmpo.policy_loss("apmpo_group", lp, old, adv, mask, reward_mean=mean, reward_std=std)
    first, _ = apmpo.policy_loss("apmpo", lp[:3], old[:3], adv[:3], mask[:3], reward_mean=0.25, reward_std=0.5,
                                 normalizer=int(mask.bool().any(-1).sum()))
    second, _ = apmpo.policy_loss("apmpo", lp[3:], old[3:], adv[3:], mask[3:], reward_mean=0.75, reward_std=0.5,
                                  normalizer=int(mask.bool().any(-1).sum()))
    torch.testing.assert_close(loss, first + second)
    # metrics: over the rows with a gradient (row 1 has A = 0, row 5 no token): rows 0, 2 (mu 0.25) and 3, 4 (0.75)
    assert m["p"] == pytest.approx((math.exp(-0.8 * 0.25) + math.exp(-0.8 * 0.75)) / 2)


def test_apmpo_group_hand():
    # Two prompts, G = 4, binary rewards: group 0 = [1, 0, 0, 0], group 1 = [1, 1, 1, 0].
    # Group statistics (sample std): mu_0 = 0.25, sigma_0 = 0.5; mu_1 = 0.75, sigma_1 = 0.5.
    #   p_0 = exp(-0.8 * 0.25) = exp(-0.2),  eps_0 = 0.2 + 0.2 tanh(0.25 / (0.5 + 1e-6))  ~ 0.2924
    #   p_1 = exp(-0.8 * 0.75) = exp(-0.6),  eps_1 = 0.2 + 0.2 tanh(0.75 / (0.5 + 1e-6))  ~ 0.3810
    # (batch APMPO would use mu = 0.5, sigma = 0.5345 for all eight.)
    # Advantages A = (R - mu_g) / (sigma_g + 1e-6): group 0 [1.5, -0.5, -0.5, -0.5], group 1 [0.5, 0.5, 0.5, -1.5].
    # Token ratios: row 0 (A > 0, group 0) and row 4 (A > 0, group 1) both r = [1.35, 0.9];
    # row 3 (A < 0, group 0) r = [0.7, 1.1]; every other row r = [1, 1].
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.float64)
    adv = apmpo.group_advantages(rewards, 4)
    mu, sigma = apmpo.reward_statistics(rewards, group_size=4, scope="group")
    ratios = [[1.0, 1.0]] * 8
    ratios[0], ratios[4], ratios[3] = [1.35, 0.9], [1.35, 0.9], [0.7, 1.1]
    lr = torch.tensor(ratios, dtype=torch.float64).log()
    lp = lr.clone().requires_grad_(True)
    loss, m = apmpo.policy_loss("apmpo_group", lp, torch.zeros_like(lr), adv, torch.ones_like(lr),
                                reward_mean=mu, reward_std=sigma)

    d = 1e-6
    p0, p1 = math.exp(-0.2), math.exp(-0.6)
    e0, e1 = 0.2 + 0.2 * math.tanh(0.25 / (0.5 + d)), 0.2 + 0.2 * math.tanh(0.75 / (0.5 + d))
    A0 = [0.75 / (0.5 + d), -0.25 / (0.5 + d), -0.25 / (0.5 + d), -0.25 / (0.5 + d)]
    A1 = [0.25 / (0.5 + d), 0.25 / (0.5 + d), 0.25 / (0.5 + d), -0.75 / (0.5 + d)]

    def power_mean(x, p):
        return ((x[0] ** p + x[1] ** p) / 2) ** (1 / p)

    # row 0: 1.35 > 1 + e0 -> clipped to 1 + e0 (A > 0 takes min(r, rho)); row 4: 1.35 < 1 + e1 -> kept
    # row 3: A < 0 takes max(r, rho): 0.7 -> max(0.7, 0.8) = 0.8, 1.1 stays
    j = [A0[0] * power_mean([1 + e0, 0.9], p0), A0[1], A0[2], A0[3] * power_mean([0.8, 1.1], p0),
         A1[0] * power_mean([1.35, 0.9], p1), A1[1], A1[2], A1[3]]
    assert 1.35 > 1 + e0 and 1.35 < 1 + e1
    assert loss.item() == pytest.approx(-sum(j) / 8, abs=1e-12)
    # clipped tokens carry no gradient: row 0's first token (upper clip) and row 3's first (lower clip)
    (grad,) = torch.autograd.grad(loss, lp)
    assert grad[0, 0] == 0 and grad[3, 0] == 0 and grad[4, 0] != 0
    assert m["p"] == pytest.approx((p0 + p1) / 2) and m["eps_high"] == pytest.approx((e0 + e1) / 2)
    assert m["clip_frac_high"] == pytest.approx(1 / 16) and m["clip_frac_low"] == pytest.approx(1 / 16)
    # the paper's batch statistics give another loss (row 4's token is then clipped at 1 + eps(0.5, 0.5345))
    batch, _ = apmpo.policy_loss("apmpo", lr, torch.zeros_like(lr), adv, torch.ones_like(lr),
                                 reward_mean=0.5, reward_std=float(rewards.std()))
    assert abs(batch.item() - loss.item()) > 1e-3


def test_apmpo_group_all_equal_groups():
    # sigma_g = 0: group 0 all correct (mu 1 -> FSS = 1e6, eps = eps_max, p = exp(-0.8)), group 1 all wrong
    # (mu 0 -> eps = eps_min, p = 1). Their advantages are 0: no loss, no gradient, whatever p_g and eps_g;
    # with no row carrying a gradient the metrics average over every row.
    rewards = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])
    adv = apmpo.group_advantages(rewards, 4)
    mu, sigma = apmpo.reward_statistics(rewards, group_size=4, scope="group")
    lp = (0.3 * torch.randn(8, 5, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    loss, m = apmpo.policy_loss("apmpo_group", lp, torch.zeros(8, 5), adv, torch.ones(8, 5), reward_mean=mu, reward_std=sigma)
    (grad,) = torch.autograd.grad(loss, lp)
    assert loss.item() == 0.0 and torch.all(grad == 0)
    assert m["eps_high"] == pytest.approx((0.4 + 0.2) / 2) and m["p"] == pytest.approx((math.exp(-0.8) + 1) / 2)
    # one informative group among them: the metrics are that group's
    rewards = torch.tensor([1.0, 1, 1, 1, 1, 0, 0, 0])
    mu, sigma = apmpo.reward_statistics(rewards, group_size=4, scope="group")
    _, m = apmpo.policy_loss("apmpo_group", lp, torch.zeros(8, 5), apmpo.group_advantages(rewards, 4), torch.ones(8, 5),
                             reward_mean=mu, reward_std=sigma)
    assert m["p"] == pytest.approx(math.exp(-0.8 * 0.25), rel=1e-6)


def test_statistics_scope_is_the_objectives():
    assert apmpo.LOSSES["apmpo"].reward_stats_scope == "batch"
    assert apmpo.LOSSES["apmpo_group"].reward_stats_scope == "group" and apmpo.LOSSES["apmpo_group"].needs_reward_stats
    lp, old, adv, mask = random_batch(n=4, seed=3)
    with pytest.raises(ValueError, match="'apmpo' uses the rollout batch's statistics.*'apmpo_group'"):
        apmpo.policy_loss("apmpo", lp, old, adv, mask, reward_mean=torch.full((4,), 0.5), reward_std=0.5)
    with pytest.raises(ValueError, match=r"'apmpo_group' needs per-group statistics of shape \[N\] = \(4,\).*got float"):
        apmpo.policy_loss("apmpo_group", lp, old, adv, mask, reward_mean=0.5, reward_std=torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r"reward_std: per-group statistics must have shape \[N\] = \(4,\), got \(3,\)"):
        apmpo.policy_loss("apmpo_group", lp, old, adv, mask, reward_mean=torch.full((4,), 0.5), reward_std=torch.ones(3))
    with pytest.raises(ValueError, match="reward_stats_scope: must be one of batch, group"):
        apmpo.register_loss(apmpo.LossSpec("x", apmpo.LOSSES["grpo"].fn, "response", reward_stats_scope="prompt"))


def test_reward_range_rescales():
    lp, old, adv, mask = random_batch(seed=11)
    scaled, m1 = apmpo.policy_loss("apmpo", lp, old, adv, mask, reward_mean=5.0, reward_std=2.5, reward_range=(0, 10))
    plain, m2 = apmpo.policy_loss("apmpo", lp, old, adv, mask, reward_mean=0.5, reward_std=0.25)
    torch.testing.assert_close(scaled, plain)
    assert m1["p"] == pytest.approx(m2["p"])


@pytest.mark.parametrize(
    "hp,kind",
    [
        (dict(p_schedule="linear"), "linear"),
        (dict(p_schedule="fixed", p=1.0), "fac_only"),
        (dict(clip_schedule="fixed", eps_high=0.2), "pmpo_only"),
        (dict(fss="mean"), "fss_mean"),
        (dict(fss="inverse_std"), "fss_inv"),
    ],
)
def test_ablations_are_settings(hp, kind):
    lp, old, adv, mask = random_batch(seed=12)
    mu, sd = 0.4, 0.3
    _, m = apmpo.policy_loss("apmpo", lp, old, adv, mask, reward_mean=mu, reward_std=sd, **hp)
    eps_ratio = 0.2 + 0.2 * math.tanh(mu / (sd + 1e-6))
    expected = {
        "linear": (1 - (1 - math.exp(-0.8)) * mu, eps_ratio),
        "fac_only": (1.0, eps_ratio),
        "pmpo_only": (math.exp(-0.8 * mu), 0.2),
        "fss_mean": (math.exp(-0.8 * mu), 0.2 + 0.2 * math.tanh(mu)),
        "fss_inv": (math.exp(-0.8 * mu), 0.2 + 0.2 * math.tanh(1 / (sd + 1e-6))),
    }[kind]
    assert m["p"] == pytest.approx(expected[0]) and m["eps_high"] == pytest.approx(expected[1])

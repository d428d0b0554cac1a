"""adaptive_p, FAC, advantages, batch statistics, KL estimators."""

import math
import subprocess
import sys

import pytest
import torch

import apmpo
from apmpo.core import normalize_reward_stats


def test_adaptive_p_values():
    assert apmpo.adaptive_p(0.0) == 1.0
    assert apmpo.adaptive_p(1.0) == pytest.approx(math.exp(-0.8))
    assert apmpo.adaptive_p(0.5, gamma=2.0) == pytest.approx(math.exp(-1.0))
    t = apmpo.adaptive_p(torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(t, torch.exp(-0.8 * torch.tensor([0.0, 0.5, 1.0])))
    assert apmpo.adaptive_p(0.5, schedule="linear") == pytest.approx(1 - (1 - math.exp(-0.8)) * 0.5)
    assert apmpo.adaptive_p(0.9, schedule="fixed", p_fixed=0.3) == 0.3


def test_adaptive_p_decreases_with_accuracy():
    ps = [apmpo.adaptive_p(m) for m in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a > b for a, b in zip(ps, ps[1:]))


def test_fac_values_and_bounds():
    assert apmpo.fac_clip_high(0.0, 0.3) == pytest.approx(0.2)
    # reliable batch: high mean, low spread -> wide trust region near eps_max
    assert apmpo.fac_clip_high(0.9, 0.05) == pytest.approx(0.4, abs=1e-6)
    mid = apmpo.fac_clip_high(0.3, 0.45)
    assert mid == pytest.approx(0.2 + 0.2 * math.tanh(0.3 / (0.45 + 1e-6)))
    assert apmpo.fac_clip_high(0.3, 0.45, fss="mean") == pytest.approx(0.2 + 0.2 * math.tanh(0.3))
    assert apmpo.fac_clip_high(0.3, 0.45, fss="inverse_std") == pytest.approx(0.2 + 0.2 * math.tanh(1 / (0.45 + 1e-6)))
    assert apmpo.feedback_stability_score(0.3, 0.45) == pytest.approx(0.3 / (0.45 + 1e-6))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: apmpo.adaptive_p(1.5), "reward_mean"),
        (lambda: apmpo.adaptive_p(0.5, gamma=-1), "gamma"),
        (lambda: apmpo.adaptive_p(0.5, schedule="cubic"), "known: exp, linear, fixed"),
        (lambda: apmpo.adaptive_p(0.5, schedule="fixed", p_fixed=0.0), "p: must be >"),
        (lambda: apmpo.fac_clip_high(0.5, 0.1, eps_min=0.4, eps_max=0.2), "eps_max"),
        (lambda: apmpo.fac_clip_high(0.5, -0.1), "reward_std"),
        (lambda: apmpo.fac_clip_high(0.5, 0.1, fss="median"), "known: ratio, mean, inverse_std"),
        (lambda: apmpo.fac_clip_high(0.5, 0.1, delta=0), "delta"),
        (lambda: normalize_reward_stats(3.0, 0.5), "declare reward_range"),
        (lambda: normalize_reward_stats(3.0, 0.5, (5, 1)), "reward_range"),
    ],
)
def test_controller_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    adv = apmpo.group_advantages(r, 4)
    g0 = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(adv[:4], (g0 - 0.5) / (g0.std() + 1e-6))
    assert torch.all(adv[4:8] == 0)  # all-equal group
    assert adv[8:].sum().abs() < 1e-6
    none = apmpo.group_advantages(r, 4, normalize="none")
    torch.testing.assert_close(none[:4], g0 - 0.5)
    batch = apmpo.group_advantages(r, 4, normalize="batch")
    torch.testing.assert_close(batch[:4], (g0 - 0.5) / (r.std() + 1e-6))
    pop = apmpo.group_advantages(r, 4, unbiased=False)
    torch.testing.assert_close(pop[:4], (g0 - 0.5) / (g0.std(correction=0) + 1e-6))


def test_group_advantages_all_equal_non_binary_is_exactly_zero():
    r = torch.full((8,), 0.3)
    assert torch.all(apmpo.group_advantages(r, 8) == 0)


def test_reward_statistics():
    r = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    mean, std = apmpo.reward_statistics(r)
    assert mean.item() == pytest.approx(0.5) and std.item() == pytest.approx(r.std().item())
    gm, gs = apmpo.reward_statistics(r, group_size=3, scope="group")
    torch.testing.assert_close(gm, torch.tensor([2 / 3] * 3 + [1 / 3] * 3))
    assert gs.shape == (6,)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: apmpo.group_advantages(torch.ones(7), 4), "not a multiple of group_size 4"),
        (lambda: apmpo.group_advantages(torch.ones(8), 0), "group_size"),
        (lambda: apmpo.group_advantages(torch.ones(2, 4), 4), "rewards: expected 1 dimensions"),
        (lambda: apmpo.group_advantages(torch.tensor([1.0, float("nan")]), 2), "NaN"),
        (lambda: apmpo.group_advantages(torch.ones(4), 2, normalize="rank"), "known: group, batch, none"),
        (lambda: apmpo.reward_statistics(torch.ones(4), scope="prompt"), "known: batch, group"),
        (lambda: apmpo.reward_statistics(torch.ones(4), scope="group"), "group_size"),
        (lambda: apmpo.reward_statistics(torch.ones(0)), "empty"),
    ],
)
def test_advantage_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_kl_estimators():
    lp = torch.tensor([[-1.0, -2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    d = torch.tensor([-0.5, 1.0], dtype=torch.float64)
    for est, f in {"k1": lambda d: -d, "k2": lambda d: d * d / 2, "k3": lambda d: torch.exp(d) - d - 1}.items():
        kl, m = apmpo.kl_penalty(lp, ref, mask, estimator=est)
        assert kl.item() == pytest.approx(f(d).mean().item())
        assert m["kl"] == pytest.approx(kl.item())
    kl, _ = apmpo.kl_penalty(lp, ref, mask, aggregation="token", normalizer=4)
    assert kl.item() == pytest.approx((torch.exp(d) - d - 1).sum().item() / 4)
    with pytest.raises(ValueError, match="known: k1, k2, k3"):
        apmpo.kl_penalty(lp, ref, mask, estimator="k4")


def test_kl_zero_at_reference_and_nonnegative_k3():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(4, 6, generator=g)
    kl, _ = apmpo.kl_penalty(lp, lp, torch.ones(4, 6))
    assert kl.item() == 0.0
    kl, _ = apmpo.kl_penalty(lp, lp + torch.randn(4, 6, generator=g), torch.ones(4, 6))
    assert kl.item() > 0


def test_import_apmpo_does_not_import_heavy_libraries():
    code = "import sys, apmpo; bad = [m for m in ('transformers', 'trl', 'verl', 'datasets') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

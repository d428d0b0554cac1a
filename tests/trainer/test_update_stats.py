"""Per-step update statistics: gradient norms before clipping and the spread of the mini-batch gradients."""

from __future__ import annotations

import math

import pytest
import torch

from apmpo.trainer.loop import train
from apmpo.trainer.update_stats import UpdateStatistics

from .conftest import tiny_config
from .test_loop import REWARD


def _params():
    return [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]


def _record(stats, params, grads, max_norm):
    """One update as optimizer_step makes it: the gradients recorded, then clipped; returns the norm before clipping."""
    for param, grad in zip(params, grads):
        param.grad = grad
    stats.add()
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf))


def _grads(*values):
    return [torch.tensor(values[:2]), torch.tensor(values[2:])]


def test_by_hand():
    # g_1 = (3, 0, 0), g_2 = (1, 0, 0), g_3 = (2, 0, 3): norms 3, 1, sqrt(13); mean (2, 0, 1)
    # (1/U) sum ||g_u||^2 = (9 + 1 + 13) / 3 = 23/3; ||gbar||^2 = 5; grad_var = 23/3 - 5 = 8/3
    # (directly: ||(1,0,-1)||^2 + ||(-1,0,-1)||^2 + ||(0,0,2)||^2 = 2 + 2 + 4 = 8, / 3)
    params = _params()
    stats = UpdateStatistics(params, updates=3)
    norms = [_record(stats, params, _grads(*v), 2.0) for v in ((3.0, 0.0, 0.0), (1.0, 0.0, 0.0), (2.0, 0.0, 3.0))]
    assert norms == pytest.approx([3.0, 1.0, math.sqrt(13)])  # before clipping
    out = stats.summary(norms)  # the sum is of the gradients before clipping (the last one was clipped to 2)
    assert out["grad_norm_max"] == pytest.approx(math.sqrt(13))
    assert out["grad_var"] == pytest.approx(8 / 3, rel=1e-6)
    assert out["grad_var_ratio"] == pytest.approx((8 / 3) / (23 / 3), rel=1e-6)


def test_identical_gradients_have_no_spread_and_missing_grads_count_as_zero():
    params = _params()
    stats = UpdateStatistics(params, updates=2)
    norms = [_record(stats, params, _grads(1.0, 2.0, 2.0), 0.0) for _ in range(2)]  # 0: no clipping
    assert stats.summary(norms)["grad_var"] == pytest.approx(0.0, abs=1e-9)
    stats = UpdateStatistics(params, updates=2)
    norms = [_record(stats, params, _grads(1.0, 0.0, 0.0), 0.0)]
    norms.append(_record(stats, params, [None, None], 0.0))  # an update without gradient: a zero vector
    out = stats.summary(norms)
    assert out["grad_var"] == pytest.approx(0.25) and out["grad_var_ratio"] == pytest.approx(0.5)


def test_single_update_or_variance_off_reports_norms_only():
    params = _params()
    for stats in (UpdateStatistics(params, updates=1), UpdateStatistics(params, updates=2, variance=False)):
        assert stats.summary([]) == {}
        norms = [_record(stats, params, _grads(3.0, 4.0, 0.0), 1.0)]
        assert stats.summary(norms) == {"grad_norm_max": pytest.approx(5.0)} and stats._sum is None


def test_the_loop_logs_the_mechanism_metrics(tmp_path):
    result = train_tiny(tmp_path / "a", "algorithm.epochs=2", "algorithm.mini_batches=2")
    for m in result.history:
        assert m["grad_norm_max"] >= m["grad_norm"] > 0
        assert 0.0 <= m["grad_var_ratio"] <= 1.0 and m["grad_var"] >= 0.0
        for key in ("entropy", "clip_frac_low", "clip_frac_high", "p", "eps_high"):
            assert key in m
    single = train_tiny(tmp_path / "b", "algorithm.epochs=1", "algorithm.mini_batches=1")
    assert "grad_var" not in single.history[0] and single.history[0]["grad_norm_max"] == single.history[0]["grad_norm"]
    off = train_tiny(tmp_path / "c", "algorithm.mini_batches=2", "logging.grad_variance=false")
    assert "grad_var" not in off.history[0] and "grad_norm_max" in off.history[0]


def train_tiny(path, *overrides):
    return train(tiny_config(path, "steps=2", *overrides), reward_functions=REWARD)

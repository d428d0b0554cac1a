"""verl's registry losses "apmpo"/"pmpo" against apmpo.policy_loss, on CPU, with the real verl package.

Skips (with the install command) when verl's CPU-importable part is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import apmpo

from .conftest import VERL_HINT, random_batch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos", reason=VERL_HINT)
import apmpo.integrations.verl as av  # noqa: E402  (a plug-in that fails to import is a failure, not a skip)

pytestmark = pytest.mark.integration

STATS = {"reward_mean": 0.4, "reward_std": 0.45}


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, leaf)
    return g


def _set_stats(config, mean=STATS["reward_mean"], std=STATS["reward_std"]):
    config.policy_loss.reward_mean = mean
    config.policy_loss.reward_std = std


def _verl_call(name, config, b, rows=slice(None), weights=None):
    fn = core_algos.get_policy_loss_fn(name)
    return fn(
        old_log_prob=b["old_log_probs"][rows],
        log_prob=b["log_probs"][rows],
        advantages=b["token_advantages"][rows],
        response_mask=b["mask"][rows],
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=None if weights is None else weights[rows],
    )


def _core_hp(name):
    if name == "apmpo":
        return {**STATS, "gamma": 0.8, "eps_min": 0.2, "eps_max": 0.4, "eps_low": 0.2}
    return {"p": 0.5, "eps_low": 0.2, "eps_high": 0.2}


@pytest.mark.parametrize("name", ["apmpo", "pmpo"])
def test_registry_loss_equals_core_in_value_and_gradient(verl_actor_config, name):
    _, config = verl_actor_config(name, p=0.5 if name == "pmpo" else None)
    _set_stats(config)
    b = random_batch()
    n = b["mask"].shape[0]
    config.global_batch_info.update(dp_size=1, global_batch_size=n, batch_num_tokens=int(b["mask"].sum()))
    loss_v, metrics = _verl_call(name, config, b)
    loss_c, core_metrics = apmpo.policy_loss(
        name, b["log_probs"], b["old_log_probs"], b["advantages"], b["mask"], normalizer=n, **_core_hp(name)
    )
    torch.testing.assert_close(loss_v, loss_c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_grad(loss_v, b["log_probs"]), _grad(loss_c, b["log_probs"]), rtol=1e-12, atol=1e-12)
    assert loss_v.abs() > 0
    assert metrics["actor/apmpo/p"] == pytest.approx(core_metrics["p"])
    assert metrics["actor/pg_clipfrac"] == pytest.approx(core_metrics["clip_frac_high"])
    if name == "apmpo":
        assert metrics["actor/apmpo/p"] == pytest.approx(np.exp(-0.8 * 0.4))
        fss = 0.4 / (0.45 + 1e-6)
        assert metrics["actor/apmpo/eps_high"] == pytest.approx(0.2 + 0.2 * np.tanh(fss))
        assert metrics["actor/apmpo/fss"] == pytest.approx(fss)


def test_pmpo_at_p1_equals_verl_vanilla_ppo(verl_actor_config):
    """Independent check against verl's own math: PMPO at p = 1 is GRPO's clipped surrogate."""
    _, config = verl_actor_config("pmpo", p=1.0)
    b = random_batch(seed=3)
    n = b["mask"].shape[0]
    config.global_batch_info.update(dp_size=1, global_batch_size=n)
    loss_pmpo, _ = _verl_call("pmpo", config, b)
    loss_vanilla, _ = core_algos.compute_policy_loss_vanilla(
        old_log_prob=b["old_log_probs"], log_prob=b["log_probs"], advantages=b["token_advantages"],
        response_mask=b["mask"], loss_agg_mode="seq-mean-token-mean", config=config,
    )
    # verl divides each response's token sum by (count + 1e-8): agreement to ~1e-8 relative
    torch.testing.assert_close(loss_pmpo, loss_vanilla, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(
        _grad(loss_pmpo, b["log_probs"]), _grad(loss_vanilla, b["log_probs"]), rtol=1e-7, atol=1e-12
    )


@pytest.mark.parametrize("name", ["apmpo", "pmpo"])
@pytest.mark.parametrize("micro", [1, 2, 5, 12])
def test_micro_batches_accumulate_to_the_full_batch_gradient(verl_actor_config, name, micro):
    _, config = verl_actor_config(name, p=0.3 if name == "pmpo" else None)
    _set_stats(config)
    b = random_batch(seed=1)
    n = b["mask"].shape[0]
    config.global_batch_info.update(dp_size=1, global_batch_size=n)
    full = _grad(_verl_call(name, config, b)[0], b["log_probs"])
    total_loss, accumulated = 0.0, torch.zeros_like(full)
    for start in range(0, n, micro):
        loss, _ = _verl_call(name, config, b, slice(start, start + micro))
        accumulated += _grad(loss, b["log_probs"])
        total_loss += float(loss.detach())
    torch.testing.assert_close(accumulated, full, rtol=1e-12, atol=1e-12)
    assert total_loss == pytest.approx(float(_verl_call(name, config, b)[0].detach()), rel=1e-12)


def test_data_parallel_ranks_average_to_the_full_batch_gradient(verl_actor_config):
    """Two dp ranks, each with 2 micro-batches: DDP's average of the rank gradients is the full gradient."""
    _, config = verl_actor_config("apmpo")
    _set_stats(config)
    b = random_batch(seed=2)
    n = b["mask"].shape[0]
    config.global_batch_info.update(dp_size=1, global_batch_size=n)
    full = _grad(_verl_call("apmpo", config, b)[0], b["log_probs"])
    config.global_batch_info.update(dp_size=2, global_batch_size=n)
    rank_grads = []
    for rank_rows in (range(0, n // 2), range(n // 2, n)):
        g = torch.zeros_like(full)
        rows = list(rank_rows)
        for chunk in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
            loss, _ = _verl_call("apmpo", config, b, chunk)
            g += _grad(loss, b["log_probs"])
        rank_grads.append(g)
    torch.testing.assert_close((rank_grads[0] + rank_grads[1]) / 2, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_length_weighted_aggregation_modes_are_refused(verl_actor_config, mode):
    _, config = verl_actor_config("apmpo", loss_agg_mode=mode)
    _set_stats(config)
    with pytest.raises(ValueError, match=f"loss_agg_mode: '{mode}'.*seq-mean-token-mean"):
        _verl_call("apmpo", config, random_batch())


def test_sequence_level_is_weights_scale_each_response(verl_actor_config):
    _, config = verl_actor_config("apmpo")
    _set_stats(config)
    b = random_batch(seed=4)
    n = b["mask"].shape[0]
    config.global_batch_info.update(dp_size=1, global_batch_size=n)
    w = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    loss_v, _ = _verl_call("apmpo", config, b, weights=w[:, None] * b["mask"])
    loss_c, _ = apmpo.policy_loss(
        "apmpo", b["log_probs"], b["old_log_probs"], b["advantages"] * w, b["mask"], normalizer=n, **_core_hp("apmpo")
    )
    torch.testing.assert_close(loss_v, loss_c, rtol=1e-12, atol=1e-12)


def test_token_level_inputs_are_refused(verl_actor_config):
    _, config = verl_actor_config("apmpo")
    _set_stats(config)
    b = random_batch()
    varying = b["token_advantages"] + 0.1 * torch.arange(b["mask"].shape[1]) * b["mask"]
    with pytest.raises(ValueError, match="advantages: response 0 has values varying.*adv_estimator=grpo"):
        core_algos.get_policy_loss_fn("apmpo")(
            b["old_log_probs"], b["log_probs"], varying, b["mask"], "seq-mean-token-mean", config, None
        )
    token_weights = torch.rand_like(b["mask"]) * b["mask"]
    with pytest.raises(ValueError, match="rollout_is_weights: .*rollout_is=sequence"):
        _verl_call("apmpo", config, b, weights=token_weights)


def test_missing_statistics_name_the_route(verl_actor_config):
    _, config = verl_actor_config("apmpo")
    with pytest.raises(ValueError, match="trainer_mode=apmpo_sync.*VERL_USE_EXTERNAL_MODULES"):
        _verl_call("apmpo", config, random_batch())


def test_configuration_errors_say_what_to_set(verl_actor_config):
    _, plain = verl_actor_config("apmpo", target=False)
    with pytest.raises(ValueError, match="policy_loss._target_=apmpo.integrations.verl.APMPOPolicyLossConfig"):
        _verl_call("apmpo", plain, random_batch())
    _, pmpo = verl_actor_config("pmpo")
    with pytest.raises(ValueError, match=r"pmpo: missing p; set actor_rollout_ref.actor.policy_loss.p="):
        _verl_call("pmpo", pmpo, random_batch())
    _, config = verl_actor_config("apmpo")
    _set_stats(config)
    config.global_batch_info.update(dp_size=2, global_batch_size=None)
    with pytest.raises(ValueError, match="global_batch_size is required when dp_size > 1"):
        _verl_call("apmpo", config, random_batch())
    _set_stats(config, mean=1.7)
    config.global_batch_info.update(dp_size=1)
    with pytest.raises(ValueError, match="reward_mean.*reward_range"):
        _verl_call("apmpo", config, random_batch())


def test_unknown_policy_loss_keys_need_the_config_subclass(verl_actor_config):
    """verl itself rejects APMPO's keys under a plain PolicyLossConfig: the reason for _target_."""
    with pytest.raises(Exception, match="gamma"):
        verl_actor_config("apmpo", target=False, gamma=0.8)
    _, config = verl_actor_config("apmpo", gamma=0.5, eps_max=0.3, reward_range=[-1.0, 1.0])
    assert isinstance(config.policy_loss, av.APMPOPolicyLossConfig)
    assert (config.policy_loss.gamma, config.policy_loss.eps_max) == (0.5, 0.3)
    _set_stats(config, mean=-0.2, std=0.9)                           # in [-1, 1]: rescaled to [0, 1]
    b = random_batch()
    config.global_batch_info.update(dp_size=1, global_batch_size=b["mask"].shape[0])
    _, metrics = _verl_call("apmpo", config, b)
    assert metrics["actor/apmpo/p"] == pytest.approx(np.exp(-0.5 * 0.4))


def test_verl_grpo_advantages_equal_the_core():
    """verl's algorithm.adv_estimator=grpo computes the spec's A_i (delta 1e-6, sample std)."""
    rewards = torch.rand(16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).round(decimals=1)
    rewards[4:8] = 1.0                                               # a constant group: A = 0
    mask = torch.ones(16, 6, dtype=torch.float64)
    token_rewards = torch.zeros(16, 6, dtype=torch.float64)
    token_rewards[:, -1] = rewards
    index = np.array([f"q{i // 4}" for i in range(16)], dtype=object)
    adv, _ = core_algos.compute_grpo_outcome_advantage(token_rewards, mask, index)
    torch.testing.assert_close(adv[:, 0], apmpo.group_advantages(rewards, 4), rtol=1e-6, atol=1e-6)


def test_core_gmpo_equals_verl_geo_mean(verl_actor_config):
    """The core's GMPO baseline against verl's geo_mean loss (no empty responses: geo_mean averages all rows)."""
    _, config = verl_actor_config("geo_mean", target=False)
    b = random_batch(seed=6)
    keep = b["mask"].any(-1)
    rows = {k: b[k][keep] for k in ("log_probs", "old_log_probs", "mask", "advantages", "token_advantages")}
    loss_v, _ = core_algos.compute_policy_loss_geo_mean(
        old_log_prob=rows["old_log_probs"], log_prob=rows["log_probs"], advantages=rows["token_advantages"],
        response_mask=rows["mask"], loss_agg_mode="seq-mean-token-mean", config=config,
    )
    loss_c, _ = apmpo.policy_loss(
        "gmpo", rows["log_probs"], rows["old_log_probs"], rows["advantages"], rows["mask"],
        clip_log_low=config.clip_ratio_low, clip_log_high=config.clip_ratio_high,
    )
    torch.testing.assert_close(loss_v, loss_c, rtol=1e-6, atol=1e-9)

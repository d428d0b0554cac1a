"""Bad input to policy_loss: a ValueError naming the argument and the problem."""

import pytest
import torch

import apmpo

from .conftest import random_batch


def call(name="grpo", **overrides):
    lp, old, adv, mask = random_batch(n=3, t=4, seed=0, empty_row=False, zero_adv=False)
    args = dict(log_probs=lp, old_log_probs=old, advantages=adv, mask=mask)
    hp = {k: v for k, v in overrides.items() if k not in args}
    args.update({k: v for k, v in overrides.items() if k in args})
    return apmpo.policy_loss(name, args["log_probs"], args["old_log_probs"], args["advantages"], args["mask"], **hp)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="ppo"), "unknown loss 'ppo'; known: apmpo, apmpo_group, dapo, gmpo, grpo, gspo, pmpo"),
        (dict(old_log_probs=torch.zeros(3, 5)), r"old_log_probs: shape \(3, 5\) does not match log_probs"),
        (dict(mask=torch.ones(3, 5)), r"mask: shape \(3, 5\)"),
        (dict(advantages=torch.ones(4)), "advantages: length 4 does not match the 3 rows"),
        (dict(advantages=torch.ones(3, 1)), "advantages: expected 1 dimensions"),
        (dict(log_probs=torch.zeros(3)), "log_probs: expected 2 dimensions"),
        (dict(log_probs=torch.full((3, 4), float("nan"))), r"log_probs: contains NaN or inf \(first at index \(0, 0\)\)"),
        (dict(old_log_probs=torch.full((3, 4), float("inf"))), "old_log_probs: contains NaN or inf"),
        (dict(advantages=torch.tensor([0.0, float("nan"), 1.0])), "advantages: contains NaN"),
        (dict(mask=torch.full((3, 4), 0.5)), "mask: must contain only 0 and 1"),
        (dict(eps_low=1.0), "eps_low: must be < 1"),
        (dict(eps_low=-0.1), "eps_low: must be >= 0"),
        (dict(eps_high=-0.2), "eps_high: must be >= 0"),
        (dict(clip=0.2), "grpo: unknown hyperparameter.s. clip; accepted: eps_high, eps_low, normalizer"),
        (dict(normalizer=0), "normalizer: must be > 0"),
        (dict(name="pmpo"), "pmpo: missing required hyperparameter.s. p"),
        (dict(name="pmpo", p=0.0), "p: must be > 0"),
        (dict(name="pmpo", p=-1.0), "p: must be > 0"),
        (dict(name="apmpo"), "apmpo: missing required hyperparameter.s. reward_mean, reward_std"),
        (dict(name="apmpo", reward_mean=1.2, reward_std=0.1), r"reward_mean: 1.2 outside the reward range \[0, 1\].*declare reward_range"),
        (dict(name="apmpo", reward_mean=0.5, reward_std=0.1, eps_min=0.5, eps_max=0.3), "eps_max: must be >= eps_min"),
        (dict(name="apmpo", reward_mean=0.5, reward_std=0.1, clip_schedule="fixed"), "eps_high: clip_schedule 'fixed' needs"),
        (dict(name="apmpo", reward_mean=torch.ones(5), reward_std=0.1), r"reward_mean: 'apmpo' uses the rollout batch's statistics"),
        (dict(name="apmpo_group", reward_mean=torch.ones(5), reward_std=torch.ones(5)), r"reward_mean: per-group statistics must have shape \[N\]"),
        (dict(name="apmpo", reward_mean=float("nan"), reward_std=0.1), "reward_mean: must be finite"),
        (dict(name="gmpo", clip_log_low=-0.1), "clip_log_low: must be >= 0"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        call(**kwargs)


def test_nan_in_padding_is_fine():
    lp, old, adv, mask = random_batch(n=3, t=4, seed=0)
    lp = lp.detach().clone()
    lp[mask == 0] = float("nan")
    loss, _ = apmpo.policy_loss("grpo", lp, old, adv, mask)
    assert torch.isfinite(loss)

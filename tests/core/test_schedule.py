"""One optimizer update per rollout batch: which objectives then train exactly GRPO's gradient.

Proves ``LossSpec.single_update_equals`` (the registry's declaration that drives the
start-up warning of every entry point) from the losses themselves, in float64: at
pi_old = pi_theta (every ratio 1) each flagged objective's gradient equals the named
one's; the others' differ, and the test shows by how much and why.
"""

from __future__ import annotations

import pytest
import torch

import apmpo
from apmpo.core import SingleUpdateWarning, single_update_warning

from .conftest import HP, random_batch

FLAGGED = sorted(name for name, spec in apmpo.LOSSES.items() if spec.single_update_equals is not None)
UNFLAGGED = sorted(name for name, spec in apmpo.LOSSES.items() if spec.single_update_equals is None)

SETTINGS = {
    "apmpo": [
        dict(reward_mean=0.1, reward_std=0.3),
        dict(reward_mean=0.9, reward_std=0.2, gamma=2.0),               # p = e^-1.8: far from GRPO's p = 1
        dict(reward_mean=0.5, reward_std=0.5, p_schedule="linear", fss="mean"),
        dict(reward_mean=0.5, reward_std=0.5, clip_schedule="fixed", eps_high=0.05),
    ],
    "apmpo_group": [  # per-row statistics of the n = 8 rows of _on_policy_grad's batch
        dict(reward_mean=torch.linspace(0.05, 0.95, 8, dtype=torch.float64), reward_std=torch.full((8,), 0.3)),
        dict(reward_mean=torch.linspace(0.9, 0.1, 8, dtype=torch.float64), reward_std=torch.full((8,), 0.2), gamma=2.0),
    ],
    "pmpo": [dict(p=1e-3), dict(p=0.3), dict(p=3.0)],
    "gmpo": [dict(), dict(clip_log_low=0.01, clip_log_high=0.01)],
    "gspo": [dict(), dict(eps_low=1e-6, eps_high=1e-6)],
}


def _on_policy_grad(name: str, seed: int, normalizer=None, **hp) -> torch.Tensor:
    """d loss / d log_probs with old_log_probs = log_probs (every ratio exactly 1), float64."""
    log_probs, _, adv, mask = random_batch(n=8, t=11, seed=seed)
    loss, _ = apmpo.policy_loss(name, log_probs, log_probs.detach(), adv, mask, normalizer=normalizer, **hp)
    (grad,) = torch.autograd.grad(loss, log_probs)
    return grad


def test_every_declaration_names_a_registered_objective():
    assert set(FLAGGED) == {"apmpo", "apmpo_group", "pmpo", "gmpo", "gspo"}
    assert set(UNFLAGGED) == {"grpo", "dapo"}
    for name in FLAGGED:
        assert apmpo.LOSSES[name].single_update_equals == "grpo"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("name", "hp"), [(n, hp) for n in FLAGGED for hp in SETTINGS[n]])
def test_flagged_objectives_have_grpos_gradient_at_ratio_one(name, hp, seed):
    same_as = apmpo.LOSSES[name].single_update_equals
    grad = _on_policy_grad(name, seed, **hp)
    expected = _on_policy_grad(same_as, seed, **HP[same_as])
    assert grad.abs().max() > 1e-3                                     # a real gradient, not zero = zero
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["apmpo", "apmpo_group", "pmpo", "gmpo", "gspo"])
def test_off_policy_the_flagged_objectives_are_not_grpo(name):
    """The guard is not vacuous: once pi_theta has moved (ratios != 1), the gradients part."""
    log_probs, old, adv, mask = random_batch(n=8, t=11, seed=5, scale=0.3)
    hp = SETTINGS[name][-1] if name != "pmpo" else dict(p=0.3)

    def grad(loss_name, **kw):
        loss, _ = apmpo.policy_loss(loss_name, log_probs, old, adv, mask, **kw)
        return torch.autograd.grad(loss, log_probs)[0]

    assert (grad(name, **hp) - grad("grpo")).abs().max() > 1e-3


def test_dapo_at_ratio_one_is_its_token_level_gradient_not_grpos():
    """DAPO's clip-higher never acts on-policy, but each token weighs 1 / (all tokens), not 1 / (N T_i)."""
    log_probs, _, adv, mask = random_batch(n=8, t=11, seed=0)
    grad = _on_policy_grad("dapo", 0)
    grpo = _on_policy_grad("grpo", 0)
    tokens = mask.sum()
    torch.testing.assert_close(grad, -(adv[:, None] * mask) / tokens, rtol=1e-12, atol=1e-14)
    rows = mask.any(-1)
    expected_grpo = -(adv[:, None] * mask) / (rows.sum() * mask.sum(-1, keepdim=True).clamp(min=1))
    torch.testing.assert_close(grpo, expected_grpo, rtol=1e-12, atol=1e-14)
    assert (grad - grpo).abs().max() > 1e-3                             # ragged lengths: the two differ
    equal_lengths = torch.ones_like(mask)                               # ... and coincide only when all T_i are equal
    g_dapo = torch.autograd.grad(apmpo.policy_loss("dapo", log_probs, log_probs.detach(), adv, equal_lengths)[0],
                                 log_probs)[0]
    g_grpo = torch.autograd.grad(apmpo.policy_loss("grpo", log_probs, log_probs.detach(), adv, equal_lengths)[0],
                                 log_probs)[0]
    torch.testing.assert_close(g_dapo, g_grpo, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- the warning


def _warning(objective="apmpo", updates=1, allowed=False):
    return single_update_warning(objective, updates, allowed=allowed, settings="epochs=1, mini_batches=1",
                                 fix="set mini_batches=4", silence="allow_single_update=true")


@pytest.mark.parametrize("objective", FLAGGED)
def test_warning_names_the_settings_the_fix_and_the_silencer(objective):
    text = _warning(objective)
    assert text is not None
    for part in ("epochs=1, mini_batches=1", "set mini_batches=4", "allow_single_update=true", "GRPO's",
                 "every ratio is 1", objective):
        assert part in text


@pytest.mark.parametrize(("objective", "updates", "allowed"), [
    ("apmpo", 2, False), ("apmpo", 8, False), ("apmpo", 1, True), ("grpo", 1, False), ("dapo", 1, False),
])
def test_warning_is_silent_otherwise(objective, updates, allowed):
    assert _warning(objective, updates, allowed) is None


def test_warning_refuses_an_unknown_objective():
    with pytest.raises(ValueError, match="objective: unknown loss 'ppo'"):
        _warning("ppo")
    assert issubclass(SingleUpdateWarning, UserWarning)

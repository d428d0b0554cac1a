"""The objective registry: registration next to each loss, typed hyperparameters, controllers without a loss."""

from __future__ import annotations

import typing

import pytest
import torch
from annotated_types import Ge

import apmpo
from apmpo.core import LOSSES, REQUIRED, LossSpec, register_loss
from tests.core.conftest import hyperparameters, random_batch


def apmpo_controllers(**hp):
    """APMPO's controllers for ``hp`` over the loss's defaults (controllers take every hyperparameter)."""
    return LOSSES["apmpo"].controllers(**{**LOSSES["apmpo"].defaults, **hp})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_objective_is_documented_and_typed(name):
    spec = LOSSES[name]
    doc = spec.fn.__doc__ or ""
    assert "https://arxiv.org/abs/" in doc and "docs/spec.md" in doc, f"{name}: docstring needs its paper link and docs/spec.md"
    hints = typing.get_type_hints(spec.fn)
    assert {"log_ratio", "advantages", "mask", "return"} <= set(hints)
    for hp in spec.hyperparameters.values():
        assert hp.annotation is not typing.Any, f"{name}.{hp.name} has no type"
    assert spec.controllers is not None and spec.summary


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_controllers_are_what_the_loss_uses(name, seed):
    """The registry tells p / eps_low / eps_high (and FSS) exactly as the loss reports them, without running it."""
    lp, old, adv, mask = random_batch(seed=seed)
    hp = hyperparameters(name, lp.shape[0])
    if name == "apmpo":
        hp.update(reward_mean=0.2 + 0.5 * seed, reward_std=0.3, gamma=0.5 + seed)
    _, metrics = apmpo.policy_loss(name, lp, old, adv, mask, **hp)
    controllers = LOSSES[name].controllers(**{**LOSSES[name].defaults, **hp})
    assert set(controllers) <= set(metrics)
    informative = (adv != 0) & mask.bool().any(-1)  # per-row controllers (apmpo_group): their mean over these rows
    for key, value in controllers.items():
        if isinstance(value, torch.Tensor):  # the loss computes them in the batch's dtype (float32 here)
            assert metrics[key] == pytest.approx(float(value[informative].mean()), rel=1e-6), key
        else:
            assert metrics[key] == pytest.approx(float(value), rel=1e-12, abs=0), key


def test_apmpo_controllers_follow_the_paper():
    c = apmpo_controllers(reward_mean=0.75, reward_std=0.25, gamma=0.8, eps_min=0.2, eps_max=0.4, delta=1e-6)
    fss = 0.75 / (0.25 + 1e-6)
    assert c["p"] == pytest.approx(torch.exp(torch.tensor(-0.8 * 0.75, dtype=torch.float64)).item(), rel=1e-12)
    assert c["fss"] == pytest.approx(fss, rel=1e-12)
    assert c["eps_high"] == pytest.approx(0.2 + 0.2 * torch.tanh(torch.tensor(fss, dtype=torch.float64)).item(), rel=1e-12)


def test_apmpo_controllers_per_group_give_one_value_per_row():
    mean, std = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])
    c = apmpo_controllers(reward_mean=mean, reward_std=std)
    assert c["p"].shape == (4,) and torch.allclose(c["p"], torch.exp(-0.8 * mean))
    assert torch.equal(c["eps_high"][:2], torch.full((2,), 0.2)) and bool((c["eps_high"][2:] > 0.39).all())


@pytest.mark.parametrize(("hp", "match"), [
    (dict(reward_mean=0.5, reward_std=0.1, eps_min=0.5, eps_max=0.3), "eps_max: must be >= eps_min"),
    (dict(reward_mean=0.5, reward_std=0.1, clip_schedule="fixed"), "needs eps_high"),
    (dict(reward_mean=0.5, reward_std=0.1, p_schedule="fixed"), "p: schedule 'fixed' needs"),
    (dict(reward_mean=3.0, reward_std=0.1), "declare reward_range"),
])
def test_controllers_refuse_inconsistent_settings(hp, match):
    with pytest.raises(ValueError, match=match):
        apmpo_controllers(**hp)


def test_register_loss_as_a_decorator_reads_the_signature(monkeypatch):
    monkeypatch.setattr("apmpo.core.losses.LOSSES", dict(LOSSES))
    from apmpo.core import losses

    @register_loss("halved", controllers=lambda **hp: {"p": 1.0}, summary="half of GRPO")
    def halved(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
               normalizer: float | None = None, scale: typing.Annotated[float, Ge(0)] = 0.5,
               required: float = REQUIRED) -> tuple[torch.Tensor, dict[str, float]]:
        return scale * losses.grpo_loss(log_ratio, advantages, mask, normalizer=normalizer)[0], {}

    spec = losses.LOSSES["halved"]
    assert isinstance(spec, LossSpec) and spec.fn is halved and spec.aggregation == "response"
    assert list(spec.hyperparameters) == ["scale", "required"]
    assert spec.defaults == {"scale": 0.5, "required": REQUIRED}
    assert typing.get_args(spec.hyperparameters["scale"].annotation)[1] == Ge(0)
    with pytest.raises(ValueError, match="aggregation"):
        register_loss("bad", aggregation="sequence")(halved)

"""The driver side of the verl plug-in: the apmpo_* trainer modes compute the batch reward
statistics and hand them to verl's own ``_update_actor`` as batch metadata.

Needs verl's v1 trainer importable (transfer_queue and its imports); skips with the reason otherwise.
"""

from __future__ import annotations

import pytest
import torch

import apmpo

from .conftest import VERL_HINT

pytest.importorskip("verl.trainer.ppo.core_algos", reason=VERL_HINT)
import apmpo.integrations.verl as av  # noqa: E402  (a plug-in that fails to import is a failure, not a skip)

if av.TRAINER_IMPORT_ERROR is not None:
    pytest.skip(av.TRAINER_IMPORT_ERROR, allow_module_level=True)

import transfer_queue as tq  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.trainer.ppo.v1.trainer_base import PPOTrainer  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["sync", "colocate_async", "separate_async"])
def test_each_verl_trainer_mode_has_an_apmpo_variant(mode):
    cls = get_trainer_cls(f"apmpo_{mode}")
    assert issubclass(cls, get_trainer_cls(mode)) and issubclass(cls, PPOTrainer)
    assert cls.__mro__[1] is av.APMPOTrainerMixin                     # our two overrides run first


@pytest.mark.parametrize("mode", ["sync", "separate_async"])
def test_the_run_is_verls_own_mode(verl_actor_config, monkeypatch, mode):
    """verl branches on trainer_mode == "sync" and reads trainer.v1.<mode>: the base mode is restored."""
    seen = {}
    monkeypatch.setattr(PPOTrainer, "__init__", lambda self, config: seen.update(mode=config.trainer.v1.trainer_mode))
    cfg, _ = verl_actor_config("apmpo")
    cfg.trainer.v1.trainer_mode = f"apmpo_{mode}"
    cls = get_trainer_cls(cfg.trainer.v1.trainer_mode)
    if mode == "separate_async":                                      # its own __init__ needs Ray: stop at the base
        monkeypatch.setattr(get_trainer_cls(mode), "__init__", PPOTrainer.__init__)
    cls(cfg)
    assert seen["mode"] == mode and cfg.trainer.v1.trainer_mode == mode


def test_rollout_reward_statistics_sum_token_scores_and_skip_padding():
    scores = torch.zeros(6, 5)
    scores[torch.arange(6), torch.tensor([4, 2, 0, 3, 1, 4])] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    keep = torch.tensor([True, True, True, True, True, False])        # the last row is verl padding
    mean, std = av.rollout_reward_statistics(scores, keep)
    expected = apmpo.reward_statistics(torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]))
    assert (mean, std) == (pytest.approx(float(expected[0])), pytest.approx(float(expected[1])))
    with pytest.raises(ValueError, match="reward_mean.*reward_range"):
        av.rollout_reward_statistics(scores * 3, keep)
    assert av.rollout_reward_statistics(scores * 3, keep, [0.0, 3.0])[0] == pytest.approx(3 * mean)
    with pytest.raises(ValueError, match=r"rm_scores: expected \[N, T\]"):
        av.rollout_reward_statistics(scores[:, 0], keep)


class _ActorWorkerGroup:
    """Stands in for the Ray worker group: records what verl's _update_actor sends."""

    def __init__(self):
        self.sent = None
        self.loss_fn = None

    def update_actor(self, batch):
        self.sent = dict(batch.extra_info)
        return {"metrics": {"mfu": [0.5], "pg_loss": [0.1]}}

    def set_loss_fn(self, loss_fn):
        self.loss_fn = loss_fn


def test_update_actor_sends_the_statistics_with_the_batch(verl_actor_config, monkeypatch):
    cfg, _ = verl_actor_config("apmpo")
    rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    lengths = [3, 1, 4, 2, 5, 2, 1]
    rows = [torch.zeros(n) for n in lengths]
    for row, r in zip(rows, rewards):
        row[-1] = r
    scores = torch.nested.nested_tensor(rows, layout=torch.jagged)   # as TransferQueue returns them
    keys = [f"k{i}" for i in range(7)]
    batch = KVBatchMeta(keys=keys, tags=[{}] * 6 + [{"is_padding": True}], partition_id="train")

    def kv_batch_get(keys, partition_id, select_fields):
        assert (keys, partition_id, select_fields) == (batch.keys, "train", ["rm_scores"])
        return TensorDict({"rm_scores": scores}, batch_size=[7])

    monkeypatch.setattr(tq, "kv_batch_get", kv_batch_get)
    trainer = object.__new__(get_trainer_cls("apmpo_sync"))          # no Ray: only the update path
    trainer.config = cfg
    trainer.actor_rollout_wg = _ActorWorkerGroup()
    metrics: dict = {}
    trainer._update_actor(batch, metrics)
    mean, std = apmpo.reward_statistics(torch.tensor(rewards[:6]))
    sent = trainer.actor_rollout_wg.sent
    assert sent[av.REWARD_MEAN_KEY] == pytest.approx(float(mean))
    assert sent[av.REWARD_STD_KEY] == pytest.approx(float(std))
    assert sent["global_batch_size"] == cfg.actor_rollout_ref.actor.ppo_mini_batch_size * 4  # verl's own keys too
    assert metrics["apmpo/reward_mean"] == pytest.approx(float(mean))
    assert "actor/pg_loss" in metrics


def test_install_loss_gives_the_workers_the_wrapped_ppo_loss(verl_actor_config):
    cfg, _ = verl_actor_config("apmpo", gamma=0.6)
    group = _ActorWorkerGroup()
    av.install_loss(group, cfg)
    assert group.loss_fn.func is av.apmpo_ppo_loss
    policy = group.loss_fn.keywords["config"].policy_loss
    assert isinstance(policy, av.APMPOPolicyLossConfig) and policy.gamma == 0.6

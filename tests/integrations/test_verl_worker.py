"""The worker side of the verl plug-in: statistics carried as batch metadata through verl's own
mini-batch iterator and micro-batch splitter into verl's ``ppo_loss``, wrapped by ``apmpo_ppo_loss``.

Runs verl's real code (tensordict_utils.make_iterator, engine.utils.prepare_micro_batches,
workers.utils.losses.ppo_loss) on CPU; skips when that part of verl cannot be imported.
"""

from __future__ import annotations

import pytest
import torch

import apmpo

from .conftest import VERL_HINT, random_batch

pytest.importorskip("verl.workers.utils.losses", reason=VERL_HINT)
from tensordict import TensorDict  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.workers.engine.utils import prepare_micro_batches  # noqa: E402

import apmpo.integrations.verl as av  # noqa: E402  (a plug-in that fails to import is a failure, not a skip)

pytestmark = pytest.mark.integration

PROMPT_LEN = 3
MEAN, STD = 0.25, 0.433


def _shard(b) -> TensorDict:
    """A worker's batch as verl lays it out (padded prompts + responses), with the driver's metadata."""
    n, t = b["mask"].shape
    prompt_lens = torch.arange(n) % PROMPT_LEN + 1                   # [N] 1..3 real prompt tokens
    prompt_mask = (torch.arange(PROMPT_LEN)[None, :] >= PROMPT_LEN - prompt_lens[:, None]).long()  # left pad
    data = TensorDict(
        {
            "prompts": torch.ones(n, PROMPT_LEN, dtype=torch.long),
            "responses": torch.ones(n, t, dtype=torch.long),
            "attention_mask": torch.cat([prompt_mask, b["mask"].long()], dim=1),
            "response_mask": b["mask"].long(),
            "old_log_probs": b["old_log_probs"],
            "advantages": b["token_advantages"],
            "row": torch.arange(n),
        },
        batch_size=[n],
    )
    tu.assign_non_tensor(data, **{av.REWARD_MEAN_KEY: MEAN, av.REWARD_STD_KEY: STD}, global_batch_size=n)
    return data


def _model_output(theta: torch.Tensor, micro: TensorDict) -> dict:
    """Flat (total_nnz,) log-probs as the engine returns them: response log-prob t sits one token earlier."""
    pieces = []
    for row, mask_row in zip(micro["row"].tolist(), micro["attention_mask"]):
        prompt_len = int(mask_row[:PROMPT_LEN].sum())
        length = int(mask_row[PROMPT_LEN:].sum())
        filler = torch.zeros(prompt_len - 1, dtype=theta.dtype)
        pieces += [filler, theta[row, :length], torch.zeros(1, dtype=theta.dtype)]
    return {"log_probs": torch.cat(pieces)}


def test_statistics_reach_the_loss_through_verls_batching_and_the_gradient_is_the_full_batch_one(verl_actor_config):
    _, config = verl_actor_config("apmpo")
    b = random_batch(seed=7)
    n = b["mask"].shape[0]
    theta = b["log_probs"]                                           # the policy's log-probs (leaf)
    shard = _shard(b)
    (mini,) = list(tu.make_iterator(shard, mini_batch_size=n, epochs=1, seed=0, dataloader_kwargs={"shuffle": True}))
    assert not torch.equal(mini["row"], torch.arange(n))             # shuffled: rows travel with their data
    tu.assign_non_tensor(
        mini, dp_size=1, batch_num_tokens=int(b["mask"].sum()), use_dynamic_bsz=False, micro_batch_size_per_gpu=3
    )
    micro_batches, _ = prepare_micro_batches(mini)
    assert len(micro_batches) == 4
    grad = torch.zeros_like(theta)
    for micro in micro_batches:
        assert tu.get_non_tensor_data(micro, av.REWARD_MEAN_KEY, None) == MEAN
        loss, metrics = av.apmpo_ppo_loss(config, _model_output(theta, micro), micro)
        (g,) = torch.autograd.grad(loss, theta)
        grad += g
        assert config.policy_loss.reward_mean is None                # cleared after the call
    # verl's N is global_batch_size: every response of the mini-batch (here one has no token)
    hp = {"reward_mean": MEAN, "reward_std": STD, "normalizer": n}
    full, _ = apmpo.policy_loss("apmpo", theta, b["old_log_probs"], b["advantages"], b["mask"], **hp)
    (expected,) = torch.autograd.grad(full, theta)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert metrics["actor/apmpo/reward_mean"].values == [pytest.approx(MEAN)]


def test_a_batch_without_statistics_fails_loudly(verl_actor_config):
    _, config = verl_actor_config("apmpo")
    b = random_batch(seed=8)
    shard = _shard(b)
    del shard[av.REWARD_MEAN_KEY]
    tu.assign_non_tensor(shard, dp_size=1, batch_num_tokens=int(b["mask"].sum()))
    with pytest.raises(ValueError, match="trainer_mode=apmpo_sync"):
        av.apmpo_ppo_loss(config, _model_output(b["log_probs"], shard), shard)


def test_other_loss_modes_pass_through_unchanged(verl_actor_config):
    from verl.workers.utils.losses import ppo_loss

    _, config = verl_actor_config("vanilla", target=False)
    b = random_batch(seed=9)
    shard = _shard(b)
    tu.assign_non_tensor(shard, dp_size=1, batch_num_tokens=int(b["mask"].sum()))
    out = _model_output(b["log_probs"], shard)
    ours, _ = av.apmpo_ppo_loss(config, out, shard)
    theirs, _ = ppo_loss(config, out, shard)
    torch.testing.assert_close(ours, theirs)


def test_driver_statistics_reach_the_loss_of_two_data_parallel_shards(verl_actor_config, monkeypatch):
    """The cross-process chain of a verl step, driven in one process with verl's own classes.

    verl 0.9.1's trainer cannot run without a GPU (docs/scaling.md names the blocking lines),
    so the chain it runs across Ray processes is driven here step by step: the APMPO trainer
    mode's real ``_update_actor`` computes mu_R, sigma_R from the step's reward scores and
    puts them in the batch metadata it sends; verl's ``DataProto`` carries that metadata, its
    data-parallel dispatch split (``_split_args_kwargs_data_proto``) gives each of 2 ranks
    its shard with the metadata, ``DataProto.to_tensordict`` turns it into the worker's
    non-tensor entries, and each rank runs the worker's ``train_mini_batch`` path (verl's
    ``make_iterator``, ``prepare_micro_batches``) into ``apmpo_ppo_loss``. Only the
    collectives are emulated: the all-reduced token count, and the gradient all-reduce
    (FSDP/DDP average the ranks' gradients).
    """
    if av.TRAINER_IMPORT_ERROR is not None:
        pytest.skip(av.TRAINER_IMPORT_ERROR)
    import math

    import transfer_queue as tq
    from transfer_queue import KVBatchMeta
    from verl.protocol import DataProto
    from verl.single_controller.base.decorator import _split_args_kwargs_data_proto
    from verl.trainer.ppo.v1 import get_trainer_cls

    cfg, config = verl_actor_config("apmpo")                            # config: the worker's ActorConfig
    cfg.data.train_batch_size, cfg.actor_rollout_ref.actor.ppo_mini_batch_size = 4, 4  # 4 prompts x n = 4: one update
    b = random_batch(n_groups=4, group_size=4, seed=11)
    n, t = b["mask"].shape
    theta = b["log_probs"]                                              # the policy's log-probs (leaf)

    # driver: the step's reward scores -> statistics -> the batch metadata sent to the actor workers
    rm_scores = torch.zeros(n, t)
    rm_scores[torch.arange(n), (b["mask"].sum(-1).long() - 1).clamp(min=0)] = b["rewards"].float()
    monkeypatch.setattr(tq, "kv_batch_get", lambda keys, partition_id, select_fields: TensorDict(
        {"rm_scores": rm_scores}, batch_size=[n]))
    sent = {}

    class ActorGroup:
        def update_actor(self, batch):
            sent.update(batch.extra_info)
            return {"metrics": {"mfu": [0.0]}}

    trainer = object.__new__(get_trainer_cls("apmpo_sync"))
    trainer.config, trainer.actor_rollout_wg = cfg, ActorGroup()
    driver_metrics: dict = {}
    trainer._update_actor(KVBatchMeta(keys=[f"k{i}" for i in range(n)], tags=[{}] * n, partition_id="train"),
                          driver_metrics)
    mu, sigma = (float(v) for v in apmpo.reward_statistics(b["rewards"]))
    assert (sent[av.REWARD_MEAN_KEY], sent[av.REWARD_STD_KEY]) == (pytest.approx(mu), pytest.approx(sigma))
    assert sent["global_batch_size"] == n                               # verl's own: ppo_mini_batch_size x n

    # dispatch: verl's DataProto with that metadata, split over 2 data-parallel ranks
    shard_layout = _shard(b)
    tensors = {k: v for k, v in shard_layout.items() if isinstance(v, torch.Tensor)}
    data = DataProto.from_single_dict(tensors, meta_info=dict(sent))
    (shards,), _ = _split_args_kwargs_data_proto(2, data)
    assert [len(s) for s in shards] == [n // 2, n // 2]

    # each rank: the worker's train_mini_batch -> forward_backward_batch -> loss
    rank_grads, logged_p = [], []
    for shard in shards:
        td = shard.to_tensordict()
        mini_batch_size = tu.pop(td, key="mini_batch_size") // 2          # per rank, as train_mini_batch
        (mini,) = list(tu.make_iterator(td, mini_batch_size=mini_batch_size, epochs=tu.pop(td, key="epochs"),
                                        seed=tu.pop(td, key="seed"),
                                        dataloader_kwargs=tu.pop(td, key="dataloader_kwargs")))
        tu.assign_non_tensor(mini, batch_num_tokens=int(b["mask"].sum()), dp_size=2,  # all-reduced / dp size
                             use_dynamic_bsz=False, micro_batch_size_per_gpu=2)
        micro_batches, _ = prepare_micro_batches(mini)
        grad = torch.zeros_like(theta)
        for micro in micro_batches:
            loss, metrics = av.apmpo_ppo_loss(config, _model_output(theta, micro), micro)
            grad += torch.autograd.grad(loss, theta)[0]
            logged_p += metrics["actor/apmpo/p"].values
        rank_grads.append(grad)

    assert logged_p and all(p == pytest.approx(math.exp(-0.8 * mu), rel=1e-6) for p in logged_p)
    full, _ = apmpo.policy_loss("apmpo", theta, b["old_log_probs"], b["advantages"], b["mask"],
                                reward_mean=mu, reward_std=sigma, normalizer=n)
    (expected,) = torch.autograd.grad(full, theta)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close((rank_grads[0] + rank_grads[1]) / 2, expected, rtol=1e-6, atol=1e-9)
    assert all(g.abs().sum() > 0 for g in rank_grads)                   # both ranks trained on their rows

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

"""Shared helpers for the verl / TRL plug-in tests: random RLVR batches and verl actor configs."""

from __future__ import annotations

import os

import pytest
import torch

import apmpo

VERL_HINT = (
    "verl is not installed; to run: pip install --no-deps verl==0.9.1 && pip install torch==2.13.0 ray==2.60.0 "
    "tensordict==0.10.0 omegaconf==2.3.1 hydra-core==1.3.8 codetiming orjson peft (the trainer-mode tests also "
    "need TransferQueue==0.1.11 and its imports: docs/scaling.md, 'Running the plug-in tests')"
)


def random_batch(n_groups: int = 3, group_size: int = 4, max_len: int = 9, seed: int = 0, dtype=torch.float64):
    """A random batch: variable-length responses (one with no token), binary rewards, group advantages.

    Returns dict with log_probs (leaf, requires grad), old_log_probs, mask [N, T],
    rewards [N], advantages [N] (``apmpo.group_advantages``) and token_advantages [N, T]
    (verl's layout: the response advantage on every response token, 0 on padding).
    """
    g = torch.Generator().manual_seed(seed)
    n = n_groups * group_size
    lengths = torch.randint(1, max_len + 1, (n,), generator=g)
    lengths[1] = 0                                                   # a response without tokens
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).to(dtype)  # [N, T]
    old = -torch.rand(n, max_len, generator=g, dtype=dtype) * 3      # [N, T]
    log_probs = (old + 0.25 * torch.randn(n, max_len, generator=g, dtype=dtype)).requires_grad_(True)
    rewards = torch.randint(0, 2, (n,), generator=g).to(dtype)       # [N]
    rewards[:group_size] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype)[:group_size]  # a mixed group
    advantages = apmpo.group_advantages(rewards, group_size)         # [N]
    return {
        "log_probs": log_probs,
        "old_log_probs": old,
        "mask": mask,
        "rewards": rewards,
        "advantages": advantages,
        "token_advantages": advantages[:, None] * mask,
        "group_size": group_size,
    }


@pytest.fixture
def verl_actor_config():
    """Factory: a verl ActorConfig built from verl's own generated trainer YAML, as a worker builds it."""
    pytest.importorskip("verl.trainer.ppo.core_algos", reason=VERL_HINT)
    import verl
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    def make(loss_mode: str = "apmpo", loss_agg_mode: str = "seq-mean-token-mean", target: bool = True, **policy):
        path = os.path.join(os.path.dirname(verl.__file__), "trainer", "config", "_generated_ppo_trainer.yaml")
        cfg = OmegaConf.load(path)
        actor = cfg.actor_rollout_ref.actor
        if target:
            actor.policy_loss._target_ = "apmpo.integrations.verl.APMPOPolicyLossConfig"
        actor.policy_loss.loss_mode = loss_mode
        for key, value in policy.items():
            actor.policy_loss[key] = value
        actor.loss_agg_mode = loss_agg_mode
        actor.ppo_micro_batch_size_per_gpu = 2
        cfg.actor_rollout_ref.rollout.n = 4
        cfg.algorithm.adv_estimator = "grpo"                        # verl's default (gae) is refused by APMPO
        OmegaConf.resolve(cfg)
        return cfg, omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)

    return make

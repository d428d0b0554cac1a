"""verl start-up: the preflight (``check_config``) refuses runs whose statistics or settings can never reach
the APMPO loss, before Ray, validation or a rollout; the APMPO trainer modes warn when one actor update per
rollout batch makes the loss GRPO's. Runs verl's real config tree, trainer classes and ``main_ppo`` entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from .conftest import VERL_HINT

pytest.importorskip("verl.trainer.ppo.core_algos", reason=VERL_HINT)
from omegaconf import OmegaConf, open_dict  # noqa: E402

import apmpo.integrations.verl as av  # noqa: E402  (a plug-in that fails to import is a failure, not a skip)
from apmpo.core import SingleUpdateWarning  # noqa: E402

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verl"


def _config(verl_actor_config, loss_mode="apmpo", trainer_mode="apmpo_sync", batch=64, mini=16, epochs=1, **policy):
    cfg, _ = verl_actor_config(loss_mode, p=0.5 if loss_mode == "pmpo" else None, **policy)
    cfg.trainer.v1.trainer_mode = trainer_mode
    cfg.data.train_batch_size = batch
    cfg.actor_rollout_ref.actor.ppo_mini_batch_size = mini
    cfg.actor_rollout_ref.actor.ppo_epochs = epochs
    return cfg


def _set(cfg, dotted: str, value):
    with open_dict(cfg):
        OmegaConf.update(cfg, dotted, value, force_add=True)
    return cfg


# ---------------------------------------------------------------- preflight refusals


@pytest.mark.parametrize(("change", "message"), [
    (("trainer.v1.trainer_mode", "sync"),
     r"trainer.use_v1=True, trainer.v1.trainer_mode=sync: loss_mode=apmpo needs the rollout batch's reward statistics"
     r".*set trainer.use_v1=true trainer.v1.trainer_mode=apmpo_sync"),
    (("trainer.use_v1", False), r"trainer.use_v1=False, trainer.v1.trainer_mode=apmpo_sync: .*trainer.use_v1=true"),
    (("actor_rollout_ref.actor.loss_agg_mode", "token-mean"),
     r"actor_rollout_ref.actor.loss_agg_mode: 'token-mean' weights each response.*loss_agg_mode=seq-mean-token-mean"),
    (("algorithm.adv_estimator", "gae"), r"algorithm.adv_estimator=gae .* set algorithm.adv_estimator=grpo"),
    (("algorithm.rollout_correction.rollout_is", "token"),
     r"rollout_correction.rollout_is=token: .* set algorithm.rollout_correction.rollout_is=sequence"),
    (("distillation.enabled", True), r"distillation.enabled=true: .* set distillation.enabled=false"),
    (("actor_rollout_ref.actor.policy_loss.gamma", -1.0),
     r"actor_rollout_ref.actor.policy_loss: gamma: must be >= 0.0, got -1"),
    (("actor_rollout_ref.actor.policy_loss.p_schedule", "cubic"),
     r"actor_rollout_ref.actor.policy_loss: p_schedule: unknown schedule 'cubic'; known: exp, linear, fixed"),
])
def test_preflight_refuses_naming_the_setting_its_value_and_the_fix(verl_actor_config, change, message):
    cfg = _set(_config(verl_actor_config), *change)
    with pytest.raises(ValueError, match=message):
        av.check_config(cfg)


def test_preflight_needs_the_config_class_and_pmpos_exponent(verl_actor_config):
    cfg, _ = verl_actor_config("apmpo", target=False)
    cfg.trainer.v1.trainer_mode = "apmpo_sync"
    with pytest.raises(ValueError, match=r"policy_loss._target_=verl.workers.config.PolicyLossConfig: loss_mode=apmpo "
                                         r"needs set .*_target_=apmpo.integrations.verl.APMPOPolicyLossConfig"):
        av.check_config(cfg)
    cfg = _config(verl_actor_config, "pmpo")
    cfg.actor_rollout_ref.actor.policy_loss.p = None
    with pytest.raises(ValueError, match=r"pmpo: missing p; set actor_rollout_ref.actor.policy_loss.p="):
        av.check_config(cfg)


def test_preflight_accepts_valid_runs_and_leaves_other_losses_alone(verl_actor_config):
    assert av.check_config(_config(verl_actor_config)) is None
    assert av.check_config(_config(verl_actor_config, "pmpo", trainer_mode="sync")) is None  # pmpo needs no statistics
    vanilla, _ = verl_actor_config("vanilla", target=False)
    vanilla.algorithm.adv_estimator = "gae"
    assert av.check_config(vanilla) is None


STOCK_CONFIG_WITH_THE_DOCUMENTED_OVERRIDES = [
    "actor_rollout_ref.actor.policy_loss._target_=apmpo.integrations.verl.APMPOPolicyLossConfig",
    "actor_rollout_ref.actor.policy_loss.loss_mode=apmpo", "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean",
    "algorithm.adv_estimator=grpo", "+hydra.callbacks.apmpo._target_=apmpo.integrations.verl.StartupCheck",
]
EXAMPLE_CONFIG = [f"--config-path={EXAMPLE}", "--config-name=apmpo_math", "data.train_files=unused.parquet",
                  "data.val_files=[unused.parquet]", "reward.custom_reward_function.path=unused.py"]


@pytest.mark.parametrize("arguments", [EXAMPLE_CONFIG, STOCK_CONFIG_WITH_THE_DOCUMENTED_OVERRIDES],
                         ids=["example", "stock"])
def test_main_ppo_stops_at_start_up_without_a_traceback(tmp_path, arguments):
    """verl's own entry point, the wrong trainer mode: exit 2 before Ray starts, the fix in the message."""
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "apmpo.integrations.verl"}
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *arguments, "trainer.v1.trainer_mode=sync",
         f"hydra.run.dir={tmp_path}"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    elapsed = time.perf_counter() - t0
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-4000:]
    assert "apmpo: error: trainer.use_v1=True, trainer.v1.trainer_mode=sync: loss_mode=apmpo needs" in run.stderr
    assert "Traceback" not in run.stderr and "ray init" not in run.stdout + run.stderr
    assert elapsed < 120


# ---------------------------------------------------------------- the single-update guard


def _start(cfg, monkeypatch):
    """Construct the APMPO trainer mode as main_ppo does (verl's own __init__ stubbed: it needs Ray)."""
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    if av.TRAINER_IMPORT_ERROR is not None:
        pytest.skip(av.TRAINER_IMPORT_ERROR)
    monkeypatch.setattr(PPOTrainer, "__init__", lambda self, config: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_trainer_cls(cfg.trainer.v1.trainer_mode)(cfg)
    return [w for w in caught if issubclass(w.category, SingleUpdateWarning)]


def test_the_trainer_mode_warns_at_start_up_when_one_update_makes_it_grpo(verl_actor_config, monkeypatch):
    cfg = _config(verl_actor_config, batch=64, mini=64)
    (warning,) = _start(cfg, monkeypatch)
    text = str(warning.message)
    for part in ("apmpo runs one optimizer update per rollout batch (data.train_batch_size=64, "
                 "actor_rollout_ref.actor.ppo_mini_batch_size=64, actor_rollout_ref.actor.ppo_epochs=1)",
                 "GRPO's", "actor_rollout_ref.actor.ppo_mini_batch_size=16 (data.train_batch_size=64 prompts as 4 "
                 "updates of 16", "actor_rollout_ref.actor.policy_loss.allow_single_update=true"):
        assert part in text


@pytest.mark.parametrize("changes", [
    {},                                                                           # 64 / 16: 4 updates
    {"mini": 64, "epochs": 2},
    {"mini": 64, "allow_single_update": True},
])
def test_the_trainer_mode_is_silent_otherwise(verl_actor_config, monkeypatch, changes):
    assert _start(_config(verl_actor_config, **changes), monkeypatch) == []


def test_bypass_mode_is_not_on_policy_so_no_warning(verl_actor_config, monkeypatch):
    cfg = _set(_config(verl_actor_config, mini=64), "algorithm.rollout_correction.bypass_mode", True)
    assert _start(cfg, monkeypatch) == []


def test_the_hydra_callback_warns_for_runs_without_an_apmpo_trainer_mode(verl_actor_config):
    cfg = _config(verl_actor_config, "pmpo", trainer_mode="sync", mini=64)
    with pytest.warns(SingleUpdateWarning, match="pmpo runs one optimizer update per rollout batch"):
        av.StartupCheck().on_job_start(config=cfg)
    cfg = _config(verl_actor_config, mini=64)                                     # the trainer mode warns instead
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        av.StartupCheck().on_job_start(config=cfg)
    with pytest.raises(SystemExit) as exit_info:
        av.StartupCheck().on_job_start(config=_set(cfg, "trainer.v1.trainer_mode", "sync"))
    assert exit_info.value.code == 2


def test_updates_per_rollout_follows_verls_mini_batches(verl_actor_config):
    assert av.updates_per_rollout(_config(verl_actor_config, batch=64, mini=16, epochs=1)) == 4
    assert av.updates_per_rollout(_config(verl_actor_config, batch=64, mini=64, epochs=3)) == 3

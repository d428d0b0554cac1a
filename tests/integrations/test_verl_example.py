"""examples/verl: the launch script and YAML compose into a valid verl config with the paper's setup,
and the prepared parquet files load in verl's own dataset class. CPU only, nothing is trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import VERL_HINT

pytest.importorskip("verl.trainer.ppo.core_algos", reason=VERL_HINT)
pytest.importorskip("hydra", reason=VERL_HINT)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import apmpo.integrations.verl as av  # noqa: E402  (a plug-in that fails to import is a failure, not a skip)

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verl"


def _math_files(root: Path) -> tuple[Path, Path]:
    """A 3-problem MATH-like train file and an eval folder with a Minerva-style math500 file."""
    train = root / "math_train.jsonl"
    rows = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(3)]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "eval" / "math500").mkdir(parents=True)
    (root / "eval" / "math500" / "test.jsonl").write_text(
        json.dumps({"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}) + "\n"
    )
    return train, root / "eval"


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, list[str]]:
    """Run run_apmpo_math.sh with a python that records the final verl command instead of starting Ray."""
    tmp_path = tmp_path_factory.mktemp("launch")
    record = tmp_path / "argv.json"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ]; then\n'
        f'  exec {sys.executable} -c "import json, sys; json.dump(sys.argv[1:], open(\'{record}\', \'w\'))" "$@"\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    train, eval_dir = _math_files(tmp_path)
    env = {**os.environ, "PYTHON": str(fake), "MATH_TRAIN": str(train), "EVAL_DIR": str(eval_dir),
           "DATA_DIR": str(tmp_path / "verl_data")}
    run = subprocess.run(
        ["bash", str(EXAMPLE / "run_apmpo_math.sh"), "trainer.logger=[console]"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "skipping aime24" in run.stderr                            # absent benchmarks are reported
    return tmp_path, json.loads(record.read_text())


def test_launch_script_composes_the_papers_setup(launched):
    tmp_path, argv = launched
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"]
    overrides = [a for a in argv[2:] if not a.startswith("--config")]
    with initialize_config_dir(config_dir=str(EXAMPLE), version_base=None):
        cfg = compose("apmpo_math", overrides=overrides)
    OmegaConf.resolve(cfg)
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen2.5-Math-1.5B-Instruct"
    assert cfg.data.train_batch_size * rollout.n == 512 and rollout.n == 8 and rollout.temperature == 1.0
    assert actor.ppo_mini_batch_size * rollout.n == 128 and av.updates_per_rollout(cfg) == 4  # 4 updates of 128
    assert av.check_config(cfg) is None                              # the start-up check passes, silently
    assert (actor.optim.lr, cfg.trainer.total_training_steps) == (1e-6, 400)
    assert (actor.use_kl_loss, actor.kl_loss_coef, actor.kl_loss_type) == (True, 0.001, "low_var_kl")
    assert actor.loss_agg_mode in av.SUPPORTED_LOSS_AGG_MODES
    assert cfg.trainer.v1.trainer_mode == "apmpo_sync" and cfg.algorithm.adv_estimator == "grpo"
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == "apmpo.integrations.verl"
    assert Path(cfg.reward.custom_reward_function.path).name == "verl_reward.py"
    assert list(cfg.data.val_files) == [str(tmp_path / "verl_data" / "math500.parquet")]

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    policy = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor).policy_loss
    assert isinstance(policy, av.APMPOPolicyLossConfig)
    paper = ("apmpo", 0.8, 0.2, 0.4, 1e-6)
    assert (policy.loss_mode, policy.gamma, policy.eps_min, policy.eps_max, policy.delta) == paper


def test_prepared_parquet_loads_in_verls_dataset(launched, tmp_path):
    data_dir = launched[0] / "verl_data"
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from apmpo.models import tiny_tokenizer

    config = OmegaConf.create({"cache_dir": str(tmp_path / "cache"), "max_prompt_length": 256, "truncation": "error"})
    train = RLHFDataset([str(data_dir / "math_train.parquet")], tiny_tokenizer(), config)
    assert len(train) == 3
    item = train[1]
    assert item["data_source"] == "math_train"
    assert item["reward_model"] == {"style": "rule", "ground_truth": "2"}
    evaluation = RLHFDataset([str(data_dir / "math500.parquet")], tiny_tokenizer(), config)
    assert evaluation[0]["reward_model"]["ground_truth"] == "\\frac{1}{2}"


def test_reward_function_scores_answers_binary():
    from apmpo.integrations.verl_reward import compute_score

    assert compute_score("math500", "so the answer is $\\boxed{0.5}$", "\\frac{1}{2}") == 1.0
    assert compute_score("math500", "the answer is \\boxed{3}", "4") == 0.0
    with pytest.raises(TypeError, match="solution_str"):
        compute_score("math500", None, "4")


def test_documented_overrides_turn_a_verl_run_into_apmpo():
    """docs/scaling.md "Adding APMPO to an existing verl run", applied to verl's stock ppo_trainer config."""
    import verl
    from verl.utils.config import omega_conf_to_dataclass

    overrides = [
        "actor_rollout_ref.actor.policy_loss._target_=apmpo.integrations.verl.APMPOPolicyLossConfig",
        "actor_rollout_ref.actor.policy_loss.loss_mode=apmpo",
        "+actor_rollout_ref.actor.policy_loss.gamma=0.7",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean",
        "trainer.v1.trainer_mode=apmpo_sync",
        "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=apmpo.integrations.verl",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.model.path=/models/any",
    ]
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose("ppo_trainer", overrides=overrides)
    OmegaConf.resolve(cfg)
    policy = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor).policy_loss
    assert isinstance(policy, av.APMPOPolicyLossConfig) and policy.gamma == 0.7 and policy.eps_max == 0.4
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == "apmpo.integrations.verl"

"""Configuration: YAML loading, typed overrides, validation messages, documentation."""

from __future__ import annotations

import pytest

from apmpo import LOSSES
from apmpo.trainer.config import (
    PACKAGED_CONFIGS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    dump_config_yaml,
    field_docs,
    load_config,
    packaged_config,
    validate_config,
)


def _problems(*overrides: str) -> str:
    """The message of the ConfigError that building the default config with ``overrides`` raises."""
    with pytest.raises(ConfigError) as info:
        validate_config(apply_overrides(TrainConfig(), list(overrides)))
    return str(info.value)


def test_defaults_are_valid():
    validate_config(TrainConfig())


@pytest.mark.parametrize("name", PACKAGED_CONFIGS)
def test_packaged_configs_load_and_validate(name):
    config = load_config(packaged_config(name))
    # the GPU config points at a local MATH file and a model that are not here
    validate_config(config, check_files=name != "paper_math_gpu.yaml")


def test_paper_config_matches_the_paper():
    c = load_config(packaged_config("paper_math_gpu"))
    assert c.rollout.prompts_per_step * c.rollout.group_size == 512
    assert c.rollout.group_size == 8 and c.steps == 400 and c.optim.lr == 1e-6
    assert c.algorithm.name == "apmpo" and c.algorithm.beta == 0.001 and c.rollout.temperature == 1.0
    hp = {**LOSSES["apmpo"].defaults, **c.algorithm.params}
    assert (hp["gamma"], hp["eps_low"], hp["eps_min"], hp["eps_max"]) == (0.8, 0.2, 0.2, 0.4)


def test_yaml_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "'optim.lrr'" in message and "did you mean 'lr'" in message


def test_yaml_unknown_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optimizer:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer'.*known keys here: seed, steps, model"):
        load_config(path)


def test_yaml_wrong_type_names_field_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rollout:\n  group_size: eight\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: rollout.group_size: expected an integer >= 2, got 'eight'"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_not_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_overrides_are_typed():
    c = apply_overrides(TrainConfig(), [
        "optim.lr=1e-5", "steps=7", "logging.tensorboard=false", "optim.betas=[0.9, 0.95]",
        "algorithm.params.gamma=0.5", "data.eval=null", "model.lora={r: 8}", "rollout.top_p=1",
        "reward.functions.exact_match=1",
    ])
    assert c.optim.lr == 1e-5 and isinstance(c.optim.lr, float)
    assert c.steps == 7 and c.logging.tensorboard is False
    assert c.optim.betas == (0.9, 0.95)
    assert c.algorithm.params == {"gamma": 0.5}
    assert c.data.eval is None and c.model.lora.r == 8 and c.model.lora.alpha == 32
    assert c.rollout.top_p == 1.0 and isinstance(c.rollout.top_p, float)
    assert c.reward.functions == {"exact_match": 1}
    assert TrainConfig().optim.lr == 1e-6  # the original is not modified


@pytest.mark.parametrize("item, pattern", [
    ("optim.lrr=1", r"unknown key 'optim.lrr'.*did you mean 'lr'"),
    ("algorithm.reward_stats_scope=group", r"algorithm.reward_stats_scope: removed: .*algorithm.name=apmpo_group"),
    ("steps=many", r"override 'steps=many': steps: expected an integer >= 1, got 'many'"),
    ("noequals", r"expected key=value"),
    ("optim.lr.x=1", r"optim.lr is not a section or mapping"),
    ("rollout.group_size=null", r"rollout.group_size: expected an integer >= 2, got None"),
])
def test_bad_overrides(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(TrainConfig(), [item])


def test_group_size_and_batch_shape():
    msg = _problems("rollout.group_size=1")
    assert "override 'rollout.group_size=1': rollout.group_size: must be an integer >= 2, got 1" in msg
    msg = _problems("rollout.prompts_per_step=3", "rollout.group_size=5", "algorithm.mini_batches=4")
    assert "3 x 5 = 15 responses is not divisible into 4 mini-batches" in msg


def test_unknown_algorithm_lists_the_registry():
    msg = _problems("algorithm.name=ppo")
    assert "algorithm.name: unknown algorithm 'ppo' (did you mean 'pmpo'?)" in msg
    for name in LOSSES:
        assert name in msg


def test_loss_hyperparameters_are_typed_from_the_registry():
    msg = _problems("algorithm.name=grpo", "algorithm.params.gamma=0.5")
    assert "algorithm.params.gamma: unknown hyperparameter of 'grpo'; allowed: eps_low, eps_high" in msg
    msg = _problems("algorithm.params.gama=0.5")
    assert "algorithm.params.gama: unknown hyperparameter of 'apmpo' (did you mean 'gamma'?)" in msg
    msg = _problems("algorithm.params.reward_mean=0.5")
    assert "algorithm.params.reward_mean: set by the trainer" in msg
    assert "algorithm.params.p: required" in _problems("algorithm.name=pmpo")
    assert "algorithm.params.eps_low: must be a finite number in [0, 1), got 1.5" in _problems("algorithm.params.eps_low=1.5")
    assert "algorithm.params.gamma: expected a number >= 0, got 'fast'" in _problems("algorithm.params.gamma=fast")
    assert "algorithm.params.fss: must be 'ratio', 'mean' or 'inverse_std'" in _problems("algorithm.params.fss=mode")
    config = validate_config(apply_overrides(TrainConfig(), ["algorithm.name=pmpo", "algorithm.params.p=1"]))
    assert config.algorithm.params == {"p": 1.0} and isinstance(config.algorithm.params["p"], float)


def test_hyperparameters_that_depend_on_each_other_are_checked_without_a_loss():
    msg = _problems("algorithm.params.eps_min=0.5", "algorithm.params.eps_max=0.3")
    assert "algorithm.params: eps_max: must be >= eps_min (0.5), got 0.3" in msg
    assert "needs eps_high" in _problems("algorithm.params.clip_schedule=fixed")
    assert "schedule 'fixed' needs" in _problems("algorithm.params.p_schedule=fixed")
    validate_config(apply_overrides(TrainConfig(), ["algorithm.params.p_schedule=fixed", "algorithm.params.p=1"]))


def test_every_problem_is_reported_at_once():
    msg = _problems("optim.lr=0", "rollout.top_p=2", "algorithm.kl_estimator=k9", "eval.temperature=-1")
    assert msg.startswith("invalid configuration:")
    assert "optim.lr: must be a finite number > 0, got 0" in msg
    assert "rollout.top_p: must be a finite number in (0, 1], got 2" in msg
    assert "algorithm.kl_estimator: must be 'k1', 'k2' or 'k3', got 'k9'" in msg
    assert "eval.temperature: must be a finite number >= 0, got -1" in msg


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", ".inf", "1e400", "-1e400"])
@pytest.mark.parametrize("key, allowed", [
    ("optim.lr", "> 0"), ("optim.weight_decay", ">= 0"), ("optim.adam_eps", "> 0"), ("optim.max_grad_norm", ">= 0"),
    ("optim.min_lr_ratio", "in [0, 1]"), ("rollout.temperature", "> 0"), ("rollout.top_p", "in (0, 1]"),
    ("algorithm.beta", ">= 0"), ("algorithm.advantage_delta", "> 0"), ("algorithm.overlong_penalty", ">= 0"),
    ("eval.temperature", ">= 0"), ("algorithm.params.gamma", ">= 0"), ("algorithm.params.delta", "> 0"),
])
def test_every_float_setting_is_finite_and_in_range(key, allowed, value):
    msg = _problems(f"{key}={value}")
    assert f"{key}: must be a finite number {allowed}, got " in msg, msg


@pytest.mark.parametrize("key, value", [
    ("optim.betas", "[0.9, inf]"), ("optim.betas", "[1.0, 0.9]"), ("algorithm.reward_range", "[0, nan]"),
    ("reward.functions.exact", "inf"), ("model.lora.dropout", "1.0"),
])
def test_floats_inside_lists_and_mappings_are_checked(key, value):
    msg = _problems(f"{key}={value}")
    assert key.split(".")[0] in msg and "must be a finite number" in msg, msg


@pytest.mark.parametrize("key, value, allowed", [
    ("steps", "0", ">= 1"), ("seed", "-1", "in [0, 9223372036854775807]"), ("rollout.group_size", "1", ">= 2"),
    ("rollout.prompts_per_step", "0", ">= 1"), ("rollout.max_new_tokens", "0", ">= 1"), ("rollout.top_k", "-1", ">= 0"),
    ("rollout.max_prompt_tokens", "0", ">= 1"), ("rollout.generation_batch_size", "-1", ">= 0"),
    ("algorithm.epochs", "0", ">= 1"), ("algorithm.mini_batches", "0", ">= 1"), ("algorithm.max_sampling_rounds", "0", ">= 1"),
    ("algorithm.overlong_buffer", "-1", ">= 0"), ("optim.warmup_steps", "-1", ">= 0"), ("optim.micro_batch_size", "0", ">= 1"),
    ("optim.logprob_chunk_size", "0", ">= 1"), ("logging.sample_every", "-1", ">= 0"), ("logging.num_samples", "-1", ">= 0"),
    ("checkpoint.every", "-1", ">= 0"), ("checkpoint.keep_last", "0", ">= 1"), ("eval.every", "-1", ">= 0"),
    ("eval.max_examples", "0", ">= 1"), ("eval.batch_size", "0", ">= 1"), ("eval.max_new_tokens", "0", ">= 1"),
    ("eval.num_samples", "0", ">= 1"), ("model.num_threads", "-1", ">= 0"), ("data.train_size", "0", ">= 1"),
    ("model.lora.r", "0", ">= 1"),
])
def test_every_integer_setting_is_in_range(key, value, allowed):
    msg = _problems(f"{key}={value}")
    assert f"{key}: must be an integer {allowed}, got {value}" in msg, msg


def test_missing_data_file_and_model_path(tmp_path):
    msg = _problems(f"data.train={tmp_path}/train.jsonl", f"model.name={tmp_path}/model")
    assert f"data.train: {tmp_path}/train.jsonl: no such file (nor a built-in task" in msg
    assert "arithmetic" in msg  # the known tasks are listed
    assert f"model.name: {tmp_path}/model: no such file or directory" in msg
    assert "reward.functions: name at least one reward function" in msg


def test_every_field_is_documented():
    from pydantic import BaseModel

    seen = []

    def walk(cls):
        docs = field_docs(cls)
        for name, field in cls.model_fields.items():
            assert docs.get(name), f"{cls.__name__}.{name} has no docstring"
            seen.append(name)
            if isinstance(field.default_factory, type) and issubclass(field.default_factory, BaseModel):
                walk(field.default_factory)

    walk(TrainConfig)
    assert len(seen) > 60  # the sections were walked


def test_dump_round_trips_and_carries_docs():
    c = apply_overrides(TrainConfig(), ["optim.lr=3e-6", "algorithm.params.gamma=0.5", "data.task={digits: 2}"])
    text = dump_config_yaml(c)
    assert "# Peak learning rate." in text and "lr: 3.0e-06" in text
    import yaml

    assert config_from_dict(yaml.safe_load(text)) == c
    assert config_from_dict(yaml.safe_load(dump_config_yaml(c, comments=False))) == c


def test_stored_configs_of_earlier_versions_still_load(tmp_path):
    # run directories written before the statistics' scope became the objective's carry its old default
    path = tmp_path / "config.yaml"
    path.write_text("algorithm:\n  name: apmpo\n  reward_stats_scope: batch\n")
    assert load_config(path).algorithm == load_config(None, ["algorithm.name=apmpo"]).algorithm
    path.write_text("algorithm:\n  name: apmpo\n  reward_stats_scope: group\n")
    with pytest.raises(ConfigError, match=r"config.yaml: algorithm.reward_stats_scope: removed: .*apmpo_group"):
        load_config(path)

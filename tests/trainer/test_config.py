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


def _problems(config, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, **kw)
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
    with pytest.raises(ConfigError, match=r"bad.yaml: rollout.group_size: expected an integer, got 'eight'"):
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
    assert c.optim.betas == [0.9, 0.95]
    assert c.algorithm.params == {"gamma": 0.5}
    assert c.data.eval is None and c.model.lora == {"r": 8}
    assert c.rollout.top_p == 1.0 and isinstance(c.rollout.top_p, float)
    assert c.reward.functions == {"exact_match": 1}
    assert TrainConfig().optim.lr == 1e-6  # the original is not modified


@pytest.mark.parametrize("item, pattern", [
    ("optim.lrr=1", r"unknown key 'optim.lrr'.*did you mean 'lr'"),
    ("algorithm.reward_stats_scope=group", r"unknown key 'algorithm.reward_stats_scope'.*removed: .*apmpo_group"),
    ("algorithm.reward_stats_scope=batch", r"unknown key 'algorithm.reward_stats_scope'.*removed: .*apmpo_group"),
    ("steps=many", r"steps: expected an integer, got 'many'"),
    ("noequals", r"expected key=value"),
    ("optim.lr.x=1", r"optim.lr is not a section or mapping"),
    ("rollout.group_size=null", r"rollout.group_size: expected an integer, got null"),
])
def test_bad_overrides(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(TrainConfig(), [item])


def test_group_size_and_batch_shape():
    msg = _problems(apply_overrides(TrainConfig(), ["rollout.group_size=1"]))
    assert "rollout.group_size: must be >= 2" in msg
    msg = _problems(apply_overrides(TrainConfig(), ["rollout.prompts_per_step=3", "rollout.group_size=5", "algorithm.mini_batches=4"]))
    assert "3 x 5 = 15 responses is not divisible into 4 mini-batches" in msg


def test_unknown_algorithm_lists_the_registry():
    msg = _problems(apply_overrides(TrainConfig(), ["algorithm.name=ppo"]))
    assert "unknown algorithm 'ppo'" in msg
    for name in LOSSES:
        assert name in msg


def test_loss_hyperparameters_are_checked_against_the_loss():
    msg = _problems(apply_overrides(TrainConfig(), ["algorithm.name=grpo", "algorithm.params.gamma=0.5"]))
    assert "unknown hyperparameter(s) gamma for 'grpo'" in msg and "eps_high" in msg
    msg = _problems(apply_overrides(TrainConfig(), ["algorithm.params.reward_mean=0.5"]))
    assert "reward_mean are set by the trainer" in msg
    msg = _problems(apply_overrides(TrainConfig(), ["algorithm.name=pmpo"]))
    assert "'pmpo' needs p" in msg
    msg = _problems(apply_overrides(TrainConfig(), ["algorithm.params.eps_low=1.5"]))
    assert "eps_low" in msg and "1.5" in msg
    validate_config(apply_overrides(TrainConfig(), ["algorithm.name=pmpo", "algorithm.params.p=0.5"]))


def test_every_problem_is_reported_at_once():
    msg = _problems(apply_overrides(TrainConfig(), ["optim.lr=0", "rollout.top_p=2", "algorithm.kl_estimator=k9"]))
    assert "optim.lr" in msg and "rollout.top_p" in msg and "k9" in msg and "known: k1, k2, k3" in msg


def test_missing_data_file_and_model_path(tmp_path):
    msg = _problems(apply_overrides(TrainConfig(), [f"data.train={tmp_path}/train.jsonl", f"model.name={tmp_path}/model"]))
    assert f"data.train: '{tmp_path}/train.jsonl' is neither a built-in task" in msg
    assert "arithmetic" in msg  # the known tasks are listed
    assert f"model.name: {tmp_path}/model: no such file or directory" in msg
    assert "reward.functions: name at least one reward function" in msg


def test_every_field_is_documented():
    import dataclasses

    seen = []

    def walk(cls):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            seen.append(f.name)
            if isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory):
                walk(f.default_factory)

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
    assert load_config(path).algorithm.name == "apmpo"
    path.write_text("algorithm:\n  name: apmpo\n  reward_stats_scope: group\n")
    with pytest.raises(ConfigError, match="removed: .*apmpo_group"):
        load_config(path)

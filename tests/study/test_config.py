"""Study config loading: the packaged configs plan, bad inputs are refused naming the key at fault."""

from __future__ import annotations

import pytest
import yaml

from apmpo.study.config import StudyError, load_study_config, study_config_from_dict
from apmpo.study.runs import plan_runs

from .conftest import toy_study, write_study


@pytest.mark.parametrize("name,runs,quick_runs", [("study_tiny.yaml", 65, 18), ("study_smollm2.yaml", 17, 9)])
def test_packaged_configs_plan(name, runs, quick_runs):
    full = load_study_config(name)
    assert list(full.arms)[:4] == ["grpo", "dapo", "gmpo", "apmpo"]
    assert {"pmpo_only", "fac_only", "fss_mean", "fss_inverse_std", "p_linear"} <= set(full.arms)
    plan = plan_runs(full, model_dir="warm" if full.warmup else None)
    assert len(plan) == runs
    main_seeds = [r.seed for r in plan if r.arm == "grpo"]
    assert main_seeds == [r.seed for r in plan if r.arm == "apmpo"] and len(main_seeds) >= 3
    by_arm = {r.arm: r.config for r in plan}
    assert by_arm["pmpo_only"].algorithm.params == {"clip_schedule": "fixed", "eps_high": 0.2}
    assert by_arm["fac_only"].algorithm.params == {"p_schedule": "fixed", "p": 1.0}
    assert by_arm["dapo"].algorithm.dynamic_sampling and by_arm["dapo"].algorithm.overlong_buffer > 0
    assert by_arm["grpo"].algorithm.params == {}
    quick = load_study_config(name, quick=True)
    assert len(plan_runs(quick, model_dir="warm" if quick.warmup else None)) == quick_runs
    assert quick.output_dir != full.output_dir and quick.report.results_md != full.report.results_md
    if name == "study_tiny.yaml":  # setting (a): >= 5 seeds for every main arm, from a warm-up
        assert full.warmup is not None and len(full.seeds) >= 5
        assert full.report.results_md == "docs/results.md"


@pytest.mark.parametrize("change,message", [
    ({"arms": {"grpo": {"overide": ["x=1"]}}}, r"toy.yaml: unknown key 'arms.grpo.overide' \(did you mean 'overrides'\?\)"),
    ({"arms": {"grpo": ["algorithm.name"]}}, "is not section.field=value"),
    ({"arms": {"grpo": {"group": "extra"}}}, "arms.grpo.group"),
    ({"baseline": "dapo"}, "'dapo' is not an arm"),
    ({"seeds": []}, r"seeds: must hold at least 1 item\(s\), got \[\]"),
    ({"seeds": [-1]}, r"seeds\[0\]: must be an integer in \[0, "),
    ({"seeds": [0, 0]}, "repeated seeds"),
    ({"sedes": [0]}, "unknown key"),
    ({"warmup": {"lr": -1.0}}, "warmup.lr: must be a finite number > 0, got -1.0"),
    ({"warmup": {"lr": float("inf")}}, "warmup.lr: must be a finite number > 0, got inf"),
    ({"warmup": {"target_accuracy": float("nan")}}, r"warmup.target_accuracy: must be a finite number in \(0, 1\]"),
    ({"warmup": {"max_steps": 0}}, "warmup.max_steps: must be an integer >= 1, got 0"),
    ({"warmup": {"steps": 3}}, "unknown key 'warmup.steps' \\(did you mean 'max_steps'\\?\\)"),
    ({"report": {"smooth": 0}}, "report.smooth: must be an integer >= 1, got 0"),
    ({"report": {"late_fraction": float("inf")}}, r"report.late_fraction: must be a finite number in \(0, 1\], got inf"),
    ({"jobs": 0}, "jobs: must be an integer >= 1, got 0"),
    ({"threads_per_run": -1}, "threads_per_run: must be an integer >= 0, got -1"),
])
def test_bad_study_configs(tmp_path, change, message):
    with pytest.raises(StudyError, match=message):
        study_config_from_dict(toy_study(tmp_path, **change), "toy.yaml")


def test_bad_arm_settings_are_reported_before_any_training(tmp_path):
    data = toy_study(tmp_path)
    data["arms"]["apmpo"]["overrides"].append("algorithm.params.p_schedule=cubic")
    data["arms"]["grpo"] = ["algorithm.name=grpo", "optim.lrr=1"]
    study = study_config_from_dict(data, "toy.yaml")
    with pytest.raises(StudyError) as info:
        plan_runs(study)
    text = str(info.value)
    assert "arms.grpo" in text and "lrr" in text
    assert "arms.apmpo: override 'algorithm.params.p_schedule=cubic': algorithm.params.p_schedule: must be" in text


def test_quick_needs_a_quick_section_and_files_must_exist(tmp_path):
    data = toy_study(tmp_path)
    del data["quick"]
    with pytest.raises(StudyError, match="no quick section"):
        study_config_from_dict(data, "toy.yaml", quick=True)
    with pytest.raises(StudyError, match="no such config file"):
        load_study_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study_config(bad)
    bad.write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(StudyError, match="top level must be a mapping"):
        load_study_config(bad)


def test_the_400_step_study_extends_setting_a():
    base, study = load_study_config("study_tiny.yaml"), load_study_config("study_tiny400.yaml")
    assert list(study.arms) == ["grpo", "dapo", "gmpo", "apmpo", "pmpo_only", "fac_only", "apmpo_group"]
    assert study.arms["apmpo_group"].overrides == ["algorithm.name=apmpo_group"]
    assert (study.power.target_mde, study.power.seed_budget, study.power.power) == (2.0, 60, 0.8)
    assert study.warmup == base.warmup and study.output_dir != base.output_dir
    assert study.report.docs_dir != base.report.docs_dir and study.report.results_md != base.report.results_md
    plan = {r.arm: r.config for r in plan_runs(study, model_dir="warm")}
    reference = plan_runs(base, model_dir="warm")[0].config
    assert plan["grpo"].steps == 400 and plan["grpo"].data.task == reference.data.task
    assert plan["grpo"].eval.max_examples == plan["grpo"].data.eval_size == 1500
    assert plan["grpo"].checkpoint.every == 100 and plan["grpo"].optim == reference.optim
    assert plan["apmpo_group"].algorithm.name == "apmpo_group" and plan["dapo"].algorithm.dynamic_sampling
    quick = load_study_config("study_tiny400.yaml", quick=True)
    assert quick.power.target_mde is None and quick.output_dir == "runs/study_tiny400_quick"
    assert len(plan_runs(quick, model_dir="warm")) == 14


def test_extends_merges_sections_and_arms(tmp_path):
    base = write_study(tmp_path)
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({
        "extends": base.name, "name": "child", "train": {"steps": 3, "rollout": {"group_size": 2}},
        "arms": {"fac_only": None, "apmpo_group": ["algorithm.name=apmpo_group"]},
        "report": {"smooth": 3}, "power": {"reference_difference": 1.0}}), encoding="utf-8")
    study = load_study_config(child)
    assert study.name == "child" and list(study.arms) == ["grpo", "apmpo", "apmpo_group"]
    assert study.train["steps"] == 3 and study.train["rollout"] == {"prompts_per_step": 2, "group_size": 2,
                                                                    "max_new_tokens": 3}
    assert study.report.smooth == 3 and study.report.docs_dir == str(tmp_path / "docs")   # merged, not replaced
    assert study.power.reference_difference == 1.0 and study.seeds == [0, 1] and study.warmup is not None


@pytest.mark.parametrize("name,text,message", [
    ("loop.yaml", "extends: loop.yaml\nname: loop\n", "extends: loop.yaml extends itself"),
    ("bad.yaml", "extends: [a]\nname: bad\n", "extends: expected the file name of a study config"),
    ("missing_base.yaml", "extends: nowhere.yaml\nname: m\n", "missing_base.yaml: extends: .*nowhere.yaml"),
])
def test_bad_extends(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(StudyError, match=message):
        load_study_config(tmp_path / name)

"""Study config loading: the packaged configs plan, bad inputs are refused naming the key at fault."""

from __future__ import annotations

import pytest
import yaml

from apmpo.study.config import StudyError, load_study_config, study_config_from_dict
from apmpo.study.runs import plan_runs

from .conftest import toy_study


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

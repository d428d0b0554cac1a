"""The study runner on a two-step, two-seed toy grid: run directories, paired seeds, outputs, resume."""

from __future__ import annotations

import csv
import json
import os

import pytest

from apmpo.study.config import StudyError, load_study_config, restrict
from apmpo.study.runner import run_study
from apmpo.study.runs import plan_runs, run_status
from apmpo.study.stats import paired_difference
from apmpo.trainer.config import dump_config_yaml

from .conftest import write_study

RUNS = ["grpo-seed0", "grpo-seed1", "apmpo-seed0", "apmpo-seed1", "fac_only-seed0"]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _first_completions(run_dir):
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return [s["completion"] for s in samples if s["step"] == 1]


def test_toy_grid_runs_pairs_reports_and_resumes(tmp_path):
    study = load_study_config(write_study(tmp_path))
    result = run_study(study, command="apmpo study toy.yaml", log=lambda _: None)

    # every (arm, seed) ran in its own directory, all the planned steps, from the warm-up model
    out = tmp_path / "out"
    assert sorted(result.trained) == sorted(RUNS) and result.skipped == [] and result.missing == []
    for name in RUNS:
        summary = json.loads((out / "runs" / name / "summary.json").read_text())
        assert summary["steps"] == 2
        assert [e["step"] for e in summary["eval"]] == [0, 1, 2]
        assert summary["model"] == str(out / "warmup" / "model")
        assert (out / "logs" / f"{name}.log").is_file()
        assert not (out / "runs" / name / "checkpoints").exists()
    assert (out / "warmup" / "model" / "config.json").is_file()

    # paired seeds: same seed -> same start, same prompts, same first rollout in every arm; other seed -> other rollout
    first = {name: _first_completions(out / "runs" / name) for name in RUNS}
    assert first["grpo-seed0"] == first["apmpo-seed0"] == first["fac_only-seed0"]
    assert first["grpo-seed1"] == first["apmpo-seed1"]
    assert first["grpo-seed0"] != first["grpo-seed1"]
    before = {r.arm + str(r.seed): r.initial for r in result.runs}
    assert len(set(before.values())) == 1  # one starting model: one step-0 accuracy

    # outputs: tables, CSVs, figures, study.json, results.md
    docs = tmp_path / "docs"
    runs_csv = _rows(docs / "runs.csv")
    assert sorted(f"{r['arm']}-seed{r['seed']}" for r in runs_csv) == sorted(RUNS)
    arms_csv = _rows(docs / "arms.csv")
    assert [r["arm"] for r in arms_csv] == ["grpo", "apmpo", "fac_only"]
    assert [r["final_n"] for r in arms_csv] == ["2", "2", "1"]
    final = {(r["arm"], int(r["seed"])): float(r["final"]) for r in runs_csv}
    paired = {(r["arm"], r["metric"]): r for r in _rows(docs / "paired.csv")}
    expected = paired_difference({s: final[("apmpo", s)] for s in (0, 1)}, {s: final[("grpo", s)] for s in (0, 1)})
    assert int(paired[("apmpo", "final")]["pairs"]) == 2
    assert float(paired[("apmpo", "final")]["mean_diff"]) == pytest.approx(expected.mean, abs=1e-6)
    assert int(paired[("fac_only", "final")]["pairs"]) == 1     # paired on the one seed both ran
    curves = _rows(docs / "curves.csv")
    assert {r["metric"] for r in curves} >= {"eval:accuracy", "accuracy", "p", "eps_high", "response_length",
                                             "grad_norm", "grad_norm_max", "grad_var_ratio"}
    for r in curves:  # the band: a 95% t-interval over seeds around the mean (degenerate with one seed)
        assert float(r["ci_low"]) <= float(r["mean"]) + 1e-12 <= float(r["ci_high"]) + 2e-12
    assert "mde_at_0.8_power" in paired[("apmpo", "final")] and "seeds_for_2" in paired[("apmpo", "final")]
    assert {r["step"] for r in curves if r["metric"] == "eval:accuracy"} == {"0", "1", "2"}
    for png in ("curves_main.png", "curves_ablations.png", "mechanism_main.png", "mechanism_ablations.png",
                "paired_differences.png"):
        assert (docs / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((docs / "study.json").read_text())
    assert record["baseline"] == "grpo" and len(record["claims"]) >= 10
    md = (tmp_path / "results.md").read_text()
    assert "`apmpo study toy.yaml`" in md and "## What holds here" in md and "### In plain words" in md
    assert "MDE final / best (pts)" in md and "docs/mechanism_main.png" in md
    assert "docs/curves_main.png" in md and "| apmpo | 2 |" in md
    assert "arm dapo not in this study" in md      # claims whose arms are absent are said to be unchecked

    # resume: nothing left to train
    stamps = {name: os.stat(out / "runs" / name / "metrics.jsonl").st_mtime_ns for name in RUNS}
    again = run_study(study, report=False, log=lambda _: None)
    assert again.trained == [] and sorted(again.skipped) == sorted(RUNS) and again.warmup.reused
    assert stamps == {name: os.stat(out / "runs" / name / "metrics.jsonl").st_mtime_ns for name in RUNS}
    invocations = [json.loads(x) for x in (out / "invocations.jsonl").read_text().splitlines()]
    assert len(invocations) == 1 and invocations[0]["trained"] == 5   # a no-op invocation is not recorded

    # the same study reached by another path (relative instead of absolute) is still the same study
    moved = restrict(study, output_dir=os.path.relpath(out))
    assert run_study(moved, report=False, log=lambda _: None).trained == []

    # an interrupted run (no summary, no checkpoint) is trained again, and only it
    (out / "runs" / "apmpo-seed1" / "summary.json").unlink()
    third = run_study(study, report=False, log=lambda _: None)
    assert third.trained == ["apmpo-seed1"] and len(third.skipped) == 4
    assert json.loads((out / "runs" / "apmpo-seed1" / "summary.json").read_text())["steps"] == 2

    # a finished run made with other settings is never mixed in
    changed = restrict(study, overrides=["optim.lr=0.002"])
    with pytest.raises(StudyError, match="optim.lr"):
        run_study(changed, report=False, log=lambda _: None)


def test_dry_run_and_cli(tmp_path, capsys):
    from apmpo.cli import main

    path = write_study(tmp_path)
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5 runs" in out and "grpo-seed1" in out and "new" in out
    assert not (tmp_path / "out").exists()
    assert main(["study", str(path), "--quick", "--dry-run"]) == 0
    assert "3 runs" in capsys.readouterr().out      # quick: seed 0 only
    assert main(["study", str(path), "--arms", "apmpo", "--dry-run"]) == 2
    assert "baseline" in capsys.readouterr().err


def test_plan_applies_overrides_in_order(tmp_path):
    study = load_study_config(write_study(tmp_path, overrides=["optim.lr=0.005"]))
    plan = plan_runs(study, model_dir=tmp_path / "m")
    assert [r.name for r in plan] == RUNS
    fac = next(r for r in plan if r.arm == "fac_only")
    assert fac.config.algorithm.params == {"p_schedule": "fixed", "p": 1.0}
    assert fac.config.optim.lr == 0.005 and fac.config.seed == 0
    assert fac.config.model.name == str(tmp_path / "m") and fac.config.model.num_threads == 1
    assert fac.run_dir == tmp_path / "out" / "runs" / "fac_only-seed0"
    only = restrict(study, arms=["grpo", "fac_only"], seeds=[3, 4])
    assert [r.name for r in plan_runs(only)] == ["grpo-seed3", "grpo-seed4", "fac_only-seed3", "fac_only-seed4"]


def test_a_run_saved_before_the_sampling_engine_counts_as_generate(tmp_path):
    """A finished run whose config.yaml has no rollout.engine was sampled by generate: done under an hf plan,
    refused (naming rollout.engine) under the fast default."""
    study = load_study_config(write_study(tmp_path))
    run = next(r for r in plan_runs(study, model_dir=tmp_path / "m") if r.name == "grpo-seed0")
    run.run_dir.mkdir(parents=True)
    old_yaml = dump_config_yaml(run.config, comments=False).replace("  engine: fast\n", "")
    assert "engine" not in old_yaml
    (run.run_dir / "config.yaml").write_text(old_yaml)
    (run.run_dir / "summary.json").write_text(json.dumps({"steps": run.config.steps}))
    with pytest.raises(StudyError, match="rollout.engine: 'hf' \\(stored\\) vs 'fast' \\(planned\\)"):
        run_status(run, warmup=True)
    pinned = next(r for r in plan_runs(restrict(study, overrides=["rollout.engine=hf"]), model_dir=tmp_path / "m")
                  if r.name == "grpo-seed0")
    assert pinned.run_dir == run.run_dir and run_status(pinned, warmup=True) == "done"

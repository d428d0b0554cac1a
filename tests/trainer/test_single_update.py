"""`apmpo train` (and so `apmpo study`) warns at start-up when one update per rollout batch makes the run GRPO.

The decision and the text are ``apmpo.core.single_update_warning``'s (proved in
tests/core/test_schedule.py); here: the trainer passes its own settings, the warning
reaches the console and the run's log (metrics.jsonl, kind "warning"), and it stays
silent for a schedule with several updates, for objectives that do not collapse, and
when ``algorithm.allow_single_update`` is set.
"""

from __future__ import annotations

import pytest

import apmpo
from apmpo import cli
from apmpo.study.runner import _train_one
from apmpo.trainer.config import config_to_dict, load_config, packaged_config, packaged_config_names
from apmpo.trainer.tracking import read_jsonl

from .conftest import tiny_config

EXPECTED = ("apmpo runs one optimizer update per rollout batch (algorithm.epochs=1, algorithm.mini_batches=1)",
            "GRPO's", "algorithm.mini_batches=4", "algorithm.allow_single_update=true")


def _train(capsys, tmp_path, *overrides):
    code = cli.main(["train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=run", "steps=1",
                     "eval.at_start=false", "eval.at_end=false", "checkpoint.save_final=false", *overrides])
    err = capsys.readouterr().err
    assert code == 0, err
    warnings = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "warning"]
    return err, warnings


def test_a_single_update_warns_on_the_console_and_in_the_runs_log(capsys, tmp_path):
    err, warnings = _train(capsys, tmp_path, "algorithm.name=apmpo", "algorithm.mini_batches=1")
    assert err.count("warning: apmpo runs one optimizer update") == 1
    for part in EXPECTED:
        assert part in err
    (record,) = warnings
    assert record["step"] == 0 and all(part in record["message"] for part in EXPECTED)


@pytest.mark.parametrize("overrides", [
    [],                                                                  # tiny_test.yaml: apmpo, mini_batches 2
    ["algorithm.mini_batches=1", "algorithm.epochs=2"],
    ["algorithm.mini_batches=1", "algorithm.allow_single_update=true"],
    ["algorithm.mini_batches=1", "algorithm.name=grpo"],
    ["algorithm.mini_batches=1", "algorithm.name=dapo"],
])
def test_silent_otherwise(capsys, tmp_path, overrides):
    err, warnings = _train(capsys, tmp_path, *overrides)
    assert "optimizer update per rollout batch" not in err and warnings == []


def test_pmpo_and_gmpo_warn_too(capsys, tmp_path):
    err, _ = _train(capsys, tmp_path / "pmpo", "algorithm.name=pmpo", "algorithm.params={p: 0.5}",
                    "algorithm.mini_batches=1")
    assert "pmpo runs one optimizer update per rollout batch" in err
    err, _ = _train(capsys, tmp_path / "gmpo", "algorithm.name=gmpo", "algorithm.mini_batches=1")
    assert "gmpo runs one optimizer update per rollout batch" in err


@pytest.mark.parametrize("name", [n for n in packaged_config_names() if not n.startswith(("eval_", "study_"))])
def test_no_packaged_config_trains_grpo_by_accident(name):
    config = load_config(packaged_config(name.removesuffix(".yaml")))
    al = config.algorithm
    assert al.epochs * al.mini_batches >= 2 or apmpo.LOSSES[al.name].single_update_equals is None, name


def test_a_study_run_has_it_in_its_log(tmp_path):
    config = tiny_config(tmp_path, "steps=1", "algorithm.mini_batches=1", "checkpoint.save_final=false")
    log = tmp_path / "logs" / "apmpo-seed0.log"
    outcome = _train_one({"name": "apmpo-seed0", "status": "start", "config": config_to_dict(config), "resume": None,
                          "log": str(log), "keep_checkpoints": False})
    assert outcome["ok"], outcome
    assert "warning: apmpo runs one optimizer update per rollout batch" in log.read_text()


def test_the_setting_must_be_a_boolean(capsys):
    code = cli.main(["config", "validate", "tiny_test.yaml", "algorithm.allow_single_update=maybe"])
    err = capsys.readouterr().err
    assert code == 2 and "algorithm.allow_single_update" in err and "maybe" in err and "Traceback" not in err

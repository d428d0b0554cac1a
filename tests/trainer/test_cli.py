"""The ``apmpo`` command line: help everywhere, config show/validate, train, extensibility."""

from __future__ import annotations

import subprocess
import sys

import pytest

from apmpo import cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["demo", "--help"], ["config", "--help"],
                                  ["config", "show", "--help"], ["config", "validate", "--help"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    assert "usage: apmpo" in capsys.readouterr().out


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "apmpo", "--help"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "demo" in out.stdout and "config" in out.stdout


def test_config_show_defaults_and_packaged(capsys):
    code, out, _ = run(capsys, "config", "show")
    assert code == 0 and "# Peak learning rate." in out and "algorithm:" in out
    code, out, _ = run(capsys, "config", "show", "cpu_demo.yaml", "optim.lr=3e-5", "--plain")
    assert code == 0 and "lr: 3.0e-05" in out and "#" not in out.split("algorithm:")[1]


def test_config_show_lists_the_objectives_hyperparameters(capsys):
    code, out, _ = run(capsys, "config", "show", "tiny_test.yaml", "algorithm.params.gamma=0.5")
    assert code == 0
    block = out.split("# Hyperparameters of the objective 'apmpo'")[1]
    assert "the trainer fills in reward_mean, reward_std" in block
    assert "#   gamma: 0.5 (set; a number >= 0)" in block
    assert "#   eps_low: 0.2 (default; a number in [0, 1))" in block
    assert '#   p_schedule: "exp" (default; one of: exp, linear, fixed)' in block
    assert "#   p: null (default; a number > 0 or null)" in block and "reward_mean:" not in block
    code, out, _ = run(capsys, "config", "show", "tiny_test.yaml", "algorithm.name=dapo")
    block = out.split("# Hyperparameters of the objective 'dapo': set any of them in algorithm.params.")[1]
    assert "#   eps_high: 0.28 (default; a number >= 0)" in block
    code, out, _ = run(capsys, "config", "show", "tiny_test.yaml", "--plain")
    assert "Hyperparameters of the objective" not in out


def test_config_validate(capsys, tmp_path):
    code, out, _ = run(capsys, "config", "validate", "tiny_test.yaml")
    assert code == 0 and "valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout:\n  group_size: 1\nalgorithm:\n  name: ppo\n")
    code, _, err = run(capsys, "config", "validate", str(bad))
    assert code == 2
    assert "bad.yaml: rollout.group_size: must be an integer >= 2, got 1" in err
    assert "bad.yaml: algorithm.name: unknown algorithm 'ppo' (did you mean 'pmpo'?)" in err and "Traceback" not in err
    code, _, err = run(capsys, "config", "validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such config file" in err


def test_train_from_the_command_line(capsys, tmp_path):
    code, out, err = run(capsys, "train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=cli",
                         "steps=1", "eval.at_start=false")
    assert code == 0, err
    assert "held-out accuracy: before n/a -> after" in out and (tmp_path / "cli" / "metrics.jsonl").is_file()
    code, out, err = run(capsys, "train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=cli",
                         "steps=2", "eval.at_start=false", "--resume")
    assert code == 0, err
    code, _, err = run(capsys, "train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=cli")
    assert code == 2 and "already exists" in err


def test_missing_subcommand_modules_are_skipped(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("apmpo.trainer.commands", "apmpo.not_there.cli", "apmpo_absent_pkg.cli"))
    parser = cli.build_parser()
    assert "train" in parser.format_help()


def test_broken_subcommand_modules_are_not_hidden(monkeypatch, tmp_path):
    """A listed module that exists but fails to import (a missing dependency inside it) raises."""
    (tmp_path / "apmpo_broken_cli.py").write_text("import apmpo_dependency_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("apmpo.trainer.commands", "apmpo_broken_cli"))
    with pytest.raises(ModuleNotFoundError, match="apmpo_dependency_that_does_not_exist"):
        cli.build_parser()


@pytest.mark.parametrize("override, message", [
    ("optim.lr=inf", "optim.lr: must be a finite number > 0, got inf"),
    ("optim.lr=nan", "optim.lr: must be a finite number > 0, got nan"),
    ("optim.lr=1e400", "optim.lr: must be a finite number > 0, got 1e400"),
    ("optim.weight_decay=inf", "optim.weight_decay: must be a finite number >= 0, got inf"),
    ("rollout.temperature=inf", "rollout.temperature: must be a finite number > 0, got inf"),
])
def test_train_refuses_a_non_finite_setting_before_writing_anything(tmp_path, override, message):
    """`apmpo train tiny_test.yaml optim.lr=inf` (issue 15): exit 2, one line naming field, value and range,
    no traceback, no run directory. Run as a user would: a separate process."""
    out = subprocess.run([sys.executable, "-m", "apmpo", "train", "tiny_test.yaml", override,
                          f"logging.output_dir={tmp_path / 'runs'}", "logging.run_name=r"],
                         check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"apmpo: error: override '{override}': {message}" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()

"""The top-level ``apmpo`` parser: overrides anywhere after the subcommand, clear errors otherwise."""

import pytest

from apmpo.cli import _parse, build_parser


def test_overrides_after_options_are_collected_in_order():
    args = _parse(build_parser(), ["study", "study_tiny.yaml", "a=1", "--seeds", "0,1", "steps=3", "optim.lr=2e-4"])
    assert args.overrides == ["a=1", "steps=3", "optim.lr=2e-4"]
    assert args.seeds == [0, 1]


def test_train_overrides_after_resume_dir():
    args = _parse(build_parser(), ["train", "tiny_test.yaml", "--resume", "runs/x", "steps=3"])
    assert args.resume == "runs/x" and args.overrides == ["steps=3"]


@pytest.mark.parametrize("argv", [["study", "study_tiny.yaml", "--bogus"],
                                  ["study", "study_tiny.yaml", "--seeds", "0", "stray"],
                                  ["eval", "--nonexistent-flag", "x=1"]])
def test_unknown_arguments_are_an_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(build_parser(), argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err

"""apmpo eval compare: paired bootstrap intervals, the refusals, the files it writes, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from apmpo.eval.cli import main
from apmpo.eval.compare import CompareSettings, ComparisonError, compare_runs, load_run
from apmpo.eval.harness import summarize_records
from apmpo.eval.records import RecordsFile
from apmpo.eval.settings import EvalSettings
from tests.helpers import TINY_MODEL

TINY = TINY_MODEL


def make_run(path, correct: dict[str, list[list[bool]]], *, settings: EvalSettings | None = None,
             protocol: str | None = "r1", suite: str = "math", reward: str = "math_accuracy", answers=None):
    """A run directory as apmpo eval writes it, from per-benchmark, per-problem sample correctness."""
    n = len(next(iter(correct.values()))[0])
    settings = settings or EvalSettings(n=n, k=[1, n], temperature=0.6, top_p=0.95)
    records = []
    for bench, problems in correct.items():
        for i, samples in enumerate(problems):
            reference = (answers or {}).get(bench, [str(j) for j in range(len(problems))])[i]
            for j, ok in enumerate(samples):
                records.append({"benchmark": bench, "example_index": i, "sample_index": j, "example_id": i,
                                "reference": reference, "extracted": reference if ok else "x",
                                "score": float(ok), "completion_tokens": 5, "truncated": False})
    path.mkdir(parents=True)
    RecordsFile(path / "records.jsonl").append(records)
    summary = {
        "suite_name": suite, "protocol": {"name": protocol} if protocol else None,
        "settings": settings.model_dump(mode="json"), "rewards": {b: reward for b in correct},
        "prompts": {b: {"template": "{prompt}", "system_prompt": None, "use_chat_template": "auto"} for b in correct},
        **summarize_records(records, settings, order=list(correct)),
    }
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_bootstrap_interval_is_paired_seeded_and_matches_the_normal_approximation(tmp_path):
    rng = np.random.default_rng(1)
    a = (rng.random((400, 4)) < 0.4).tolist()
    b = [[x or (rng.random() < 0.15) for x in row] for row in a]   # B solves what A solves, and a bit more
    run_a = load_run(make_run(tmp_path / "a", {"math500": a}))
    run_b = load_run(make_run(tmp_path / "b", {"math500": b}))
    result = compare_runs(run_a, run_b, CompareSettings(resamples=20_000, seed=3))
    (row,) = result.rows
    xa, xb = np.mean(a, axis=1), np.mean(b, axis=1)
    d = xb - xa
    assert row.difference == pytest.approx(d.mean()) and row.a == pytest.approx(xa.mean())
    assert row.stderr == pytest.approx(d.std(ddof=1) / math.sqrt(len(d)))
    assert row.low == pytest.approx(d.mean() - 1.96 * row.stderr, abs=0.25 * row.stderr)
    assert row.high == pytest.approx(d.mean() + 1.96 * row.stderr, abs=0.25 * row.stderr)
    assert row.significant and row.low > 0
    # paired: far narrower than the runs' own standard errors suggest
    assert row.high - row.low < 2 * 1.96 * math.hypot(row.a_stderr, row.b_stderr) / 2
    again = compare_runs(run_a, run_b, CompareSettings(resamples=20_000, seed=3))
    assert again.rows[0].low == row.low and again.rows[0].high == row.high


def test_identical_runs_and_the_average_row(tmp_path):
    problems = {"math500": [[True, False], [False, False], [True, True]], "aime24": [[False, True], [True, True]]}
    run_a = load_run(make_run(tmp_path / "a", problems))
    run_b = load_run(make_run(tmp_path / "b", problems))
    result = compare_runs(run_a, run_b, CompareSettings(resamples=500))
    assert [r.name for r in result.rows] == ["math500", "aime24", "average"]
    assert all(r.difference == 0 and r.low == 0 and r.high == 0 and not r.significant for r in result.rows)
    assert result.rows[2].a == pytest.approx((0.5 + 0.75) / 2) and result.rows[2].problems == 5
    shifted = {"math500": [[True, True], [True, False], [True, True]], "aime24": [[False, True], [True, True]]}
    better = compare_runs(run_a, load_run(make_run(tmp_path / "c", shifted)), CompareSettings(resamples=2000))
    assert better.rows[0].difference == pytest.approx(1 / 3) and better.rows[1].difference == 0  # d = .5, .5, 0
    assert better.rows[2].difference == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"protocol": "greedy"}, "protocol: A has 'r1', B has 'greedy'"),
        ({"suite": "other"}, "suite: A has 'math', B has 'other'"),
        ({"settings": EvalSettings(n=2, k=[1, 2], temperature=1.0)}, "temperature: A has 0.6, B has 1.0"),
        ({"reward": "exact_match"}, "reward of math500: A has 'math_accuracy', B has 'exact_match'"),
        ({"answers": {"math500": ["0", "7"]}}, "problems of math500: problem 1 differs (A: id 1, answer '1'; "
                                               "B: id 1, answer '7')"),
    ],
)
def test_mismatched_runs_are_refused_naming_what_differs(tmp_path, change, words):
    problems = {"math500": [[True, False], [False, False]]}
    run_a = load_run(make_run(tmp_path / "a", problems))
    run_b = load_run(make_run(tmp_path / "b", problems, **change))
    with pytest.raises(ComparisonError) as info:
        compare_runs(run_a, run_b)
    assert str(info.value).startswith(f"cannot compare A = {tmp_path / 'a'} and B = {tmp_path / 'b'}: ")
    assert words in str(info.value)


def test_different_problem_sets_and_benchmarks(tmp_path):
    run_a = load_run(make_run(tmp_path / "a", {"math500": [[True], [False]], "aime24": [[True]]}))
    run_b = load_run(make_run(tmp_path / "b", {"math500": [[True], [False], [True]], "amc23": [[True]]}))
    with pytest.raises(ComparisonError) as info:
        compare_runs(run_a, run_b)
    message = str(info.value)
    assert "benchmarks: only in A: aime24; only in B: amc23" in message
    assert "problems of math500: A has 2 problems, B has 3 (different --limit or data)" in message


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ComparisonError, match="no such directory"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ComparisonError, match="no summary.json: not a finished apmpo eval run"):
        load_run(tmp_path / "empty")


def test_cli_end_to_end_with_two_real_runs(tmp_path, capsys, monkeypatch):
    """Two tiny-model runs of the shipped suite (different seeds), compared through `apmpo eval compare`."""
    from apmpo import cli

    common = ["eval", "--model", TINY, "--suite", "math", "--benchmarks", "aime24,amc23", "--protocol", "r1",
              "--n", "2", "--limit", "3", "--max-new-tokens", "3", "--threads", "1", "--no-progress"]
    for name, seed in (("a", "0"), ("b", "1")):
        assert cli.main([*common, "--seed", seed, "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["eval", "compare", "a", "b", "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "| aime24 | 3 |" in out and "| average | 6 |" in out and "paired bootstrap" in out
    folder = tmp_path / "compare_a_vs_b"
    assert (folder / "compare.md").read_text().startswith("Comparison of `b` (B) against `a` (A): pass@1 (avg@2)")
    assert (folder / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads((folder / "compare.json").read_text())
    assert [r["name"] for r in numbers["rows"]] == ["aime24", "amc23", "average"] and numbers["seed"] == 0

    # a greedy run of the same problems is refused, with exit status 2 and no traceback
    assert cli.main(["eval", "--model", TINY, "--suite", "math", "--benchmarks", "aime24,amc23", "--protocol",
                     "greedy", "--limit", "3", "--max-new-tokens", "3", "--threads", "1", "--no-progress",
                     "--out", str(tmp_path / "g")]) == 0
    capsys.readouterr()
    assert main(["compare", "a", "g", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apmpo eval compare: error: cannot compare A = a and B = g: protocol: A has 'r1', B has "
                          "'greedy'; n: A has 2, B has 1") and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    assert main(["compare", "a", "b", "--metric", "maj@4"]) == 2
    assert "metric maj@4: A reports only pass@1, pass@2, maj@2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--confidence", "1.5"], "--confidence 1.5: confidence: must be a finite number in (0, 1), got 1.5"),
        (["--confidence", "nan"], "--confidence nan: confidence: must be a finite number in (0, 1), got nan"),
        (["--resamples", "50"], "--resamples 50: resamples: must be an integer >= 100, got 50"),
        (["--seed", "-1"], "--seed -1: seed: must be an integer in [0, 9223372036854775807], got -1"),
    ],
)
def test_bad_compare_settings_exit_2_naming_the_flag(tmp_path, capsys, flags, words):
    """The comparison's settings are checked by the settings toolkit before any run is read."""
    problems = {"math500": [[True, False], [False, False]]}
    a, b = make_run(tmp_path / "a", problems), make_run(tmp_path / "b", problems)
    assert main(["compare", str(a), str(b), *flags, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apmpo eval compare: error: ") and words in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()

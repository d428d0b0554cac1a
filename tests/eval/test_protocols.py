"""--protocol greedy / r1, the paper-style table with standard errors, progress and wall time, the shipped suite."""

from __future__ import annotations

import json
import math

import pytest

from apmpo.eval.cli import main
from apmpo.eval.metrics import ExampleStats, stderr, summarize
from apmpo.eval.protocols import PROTOCOLS, Protocol, protocol_settings
from apmpo.eval.settings import EvalSettings
from apmpo.eval.tables import format_duration, paper_table
from tests.helpers import TINY_MODEL, write_jsonl

TINY = TINY_MODEL
FAST = ["--model", TINY, "--max-new-tokens", "3", "--batch-size", "16", "--threads", "1"]


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_protocol_settings():
    assert protocol_settings("greedy") == {"n": 1, "k": [1], "maj_k": [], "temperature": 0.0, "top_p": 1.0, "top_k": 0}
    r1 = protocol_settings("r1", n=8)
    assert r1 == {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "n": 8, "k": [1, 8], "maj_k": [8]}
    assert protocol_settings("r1")["n"] == 16 and protocol_settings("r1", n=1)["maj_k"] == []
    with pytest.raises(ValueError, match="unknown protocol 'r2'; protocols: greedy"):
        protocol_settings("r2")
    assert set(PROTOCOLS) == {"greedy", "r1"}


def test_stderr_definition_and_macro_average():
    assert stderr([1.0]) is None and stderr([]) is None
    values = [0.0, 0.5, 1.0, 1.0]
    mean = sum(values) / 4
    assert stderr(values) == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 3 / 4))
    a = [ExampleStats(correct=c) for c in ([True, False], [True, True], [False, False])]      # 0.5, 1, 0
    b = [ExampleStats(correct=c) for c in ([True, True], [False, True])]                     # 1, 0.5
    result = summarize({"a": a, "b": b}, [1, 2], [])
    se_a, se_b = stderr([0.5, 1.0, 0.0]), stderr([1.0, 0.5])
    assert result["benchmarks"]["a"]["pass@1_stderr"] == pytest.approx(se_a)
    assert result["overall"]["pass@1_stderr"] == pytest.approx(math.sqrt(se_a**2 + se_b**2) / 2)
    assert result["all"]["pass@1_stderr"] == pytest.approx(stderr([0.5, 1.0, 0.0, 1.0, 0.5]))
    assert result["benchmarks"]["a"]["pass@2_stderr"] == pytest.approx(stderr([1.0, 1.0, 0.0]))


def test_paper_table_layout():
    summary = {
        "metrics": ["pass@1", "maj@4"], "settings": {"n": 4}, "protocol": {"name": "r1"},
        "suite_benchmarks": ["math500", "minerva", "aime24"], "not_evaluated": {"minerva": "not shipped"},
        "benchmarks": {"math500": {"pass@1": 0.5, "pass@1_stderr": 0.02, "maj@4": 0.6, "maj@4_stderr": None},
                       "aime24": {"pass@1": 0.1, "pass@1_stderr": 0.05, "maj@4": 0.2, "maj@4_stderr": 0.07}},
        "overall": {"pass@1": 0.3, "pass@1_stderr": 0.0269, "maj@4": 0.4, "maj@4_stderr": None},
    }
    text = paper_table(summary)
    header, _, first, second, note, missing = text.splitlines()
    assert header.split() == ["metric", "math500", "minerva", "aime24", "average", "(2", "of", "3)"]
    assert first.split() == ["pass@1", "(avg@4)", "50.0", "±", "2.0", "n/a", "10.0", "±", "5.0", "30.0", "±", "2.7"]
    assert second.split() == ["maj@4", "60.0", "n/a", "20.0", "±", "7.0", "40.0"]
    assert "protocol r1" in note and missing == "minerva: not evaluated: not shipped"
    markdown = paper_table(summary, markdown=True)
    assert markdown.splitlines()[0] == "| metric | math500 | minerva | aime24 | average (2 of 3) |"
    assert "| pass@1 (avg@4) | 50.0 ± 2.0 | n/a | 10.0 ± 5.0 | 30.0 ± 2.7 |" in markdown
    single = {**summary, "suite_benchmarks": None, "not_evaluated": {},
              "benchmarks": {"aime24": summary["benchmarks"]["aime24"]}}
    assert paper_table(single, markdown=True).splitlines()[0] == "| metric | aime24 |"
    assert format_duration(41.54) == "41.5s" and format_duration(83.2) == "1m23s" and format_duration(3725) == "1h02m05s"


def test_math_suite_runs_with_no_data_path_under_both_protocols(tmp_path, capsys):
    out = tmp_path / "r1"
    status, stdout, stderr_text = _run([*FAST, "--suite", "math", "--protocol", "r1", "--n", "2", "--limit", "1",
                                        "--out", str(out)], capsys)
    assert status == 0, stderr_text
    assert "minerva is not evaluated: not shipped with apmpo" in stderr_text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_source"] == "shipped" and summary["suite_name"] == "math"
    assert list(summary["benchmarks"]) == ["math500", "aime24", "aime25", "amc23", "olympiadbench"]
    assert summary["suite_benchmarks"][4] == "minerva" and "minerva" in summary["not_evaluated"]
    settings = summary["settings"]
    assert (settings["n"], settings["k"], settings["maj_k"], settings["temperature"], settings["top_p"]) == (
        2, [1, 2], [2], 0.6, 0.95)
    assert settings["max_new_tokens"] == 3  # the flag beats the suite's 3072
    assert summary["protocol"]["name"] == "r1" and summary["protocol"]["overrides"] == {}
    assert summary["metrics"] == ["pass@1", "pass@2", "maj@2"]
    assert all("pass@1_stderr" in row for row in summary["benchmarks"].values())
    assert set(summary["problems"]) == set(summary["benchmarks"]) and summary["problems"]["math500"]["count"] == 1
    assert "pass@1 (avg@2)" in stdout and "average (5 of 6)" in stdout and "n/a" in stdout
    assert "wall time" in stdout and "samples/s" in stdout and "whole command" in stdout
    assert (out / "table.md").read_text().startswith("| metric | math500 | aime24 | aime25 | amc23 | minerva |")

    greedy = tmp_path / "greedy"
    status, stdout, stderr_text = _run([*FAST, "--suite", "math", "--protocol", "greedy", "--limit", "1",
                                        "--benchmarks", "math500,aime24", "--temperature", "0.5", "--out", str(greedy)],
                                       capsys)
    assert status == 0, stderr_text
    summary = json.loads((greedy / "summary.json").read_text())
    assert summary["settings"]["n"] == 1 and summary["settings"]["k"] == [1] and summary["metrics"] == ["pass@1"]
    assert summary["protocol"] == {"name": "greedy", "description": PROTOCOLS["greedy"].description,
                                   "overrides": {"temperature": 0.5}}  # an explicit flag wins and is recorded


def test_protocol_sits_between_the_flags_and_the_suite(tmp_path, capsys):
    """Precedence: flag > protocol > suite generation: > defaults, all validated together."""
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: s\ngeneration: {{n: 3, k: [1, 3], temperature: 1.0, top_k: 5, seed: 7}}\n"
        f"benchmarks:\n  - {{name: a, path: {data}}}\n"
    )
    out = tmp_path / "o"
    status, _, stderr_text = _run([*FAST, "--suite", str(suite), "--protocol", "r1", "--reward", "exact",
                                   "--top-p", "0.9", "--out", str(out)], capsys)
    assert status == 0, stderr_text
    summary = json.loads((out / "summary.json").read_text())
    got = {key: summary["settings"][key] for key in ("n", "k", "maj_k", "temperature", "top_p", "top_k", "seed")}
    # n from the suite (the protocol follows it), temperature and top_k from the protocol (over the suite),
    # top_p from the flag (over the protocol, and recorded), seed from the suite (the protocol leaves it)
    assert got == {"n": 3, "k": [1, 3], "maj_k": [3], "temperature": 0.6, "top_p": 0.9, "top_k": 0, "seed": 7}
    assert summary["protocol"]["overrides"] == {"top_p": 0.9}


@pytest.mark.parametrize(
    "argv, suite_generation, words",
    [
        (["--protocol", "greedy", "--n", "4"], None,
         "--protocol greedy: temperature: 0 is greedy decoding, which gives 4 identical samples"),
        (["--protocol", "r1", "--top-p", "2"], None, "--top-p 2.0: top_p: must be a finite number in (0, 1], got 2.0"),
        (["--protocol", "r1"], "{n: 0}", "suite.yaml: generation: n: must be an integer >= 1, got 0"),
        (["--protocol", "r1", "--n", "2", "--k", "4"], None,
         "--k 4: k: k = 4 needs at least that many samples per example, but n = 2"),
    ],
)
def test_protocol_values_are_validated_with_the_others(tmp_path, capsys, argv, suite_generation, words):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    source = ["--data", str(data)]
    if suite_generation is not None:
        suite = tmp_path / "suite.yaml"
        suite.write_text(f"name: s\ngeneration: {suite_generation}\nbenchmarks:\n  - {{name: a, path: {data}}}\n")
        source = ["--suite", str(suite)]
    status, _, stderr_text = _run([*FAST, *source, *argv, "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "Traceback" not in stderr_text
    assert stderr_text.startswith("apmpo eval: error: ") and words in stderr_text, stderr_text
    assert not (tmp_path / "o").exists()


def test_every_protocol_is_a_valid_preset_of_the_settings():
    """Each preset validates as EvalSettings on its own, and a preset naming an unknown setting is refused."""
    for protocol in PROTOCOLS.values():
        assert EvalSettings.model_validate(protocol.settings()).n >= 1
    with pytest.raises(ValueError, match="unknown evaluation setting"):
        Protocol(name="x", description="x", fixed={"temprature": 0.6})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Protocol(name="x", description="x", fixed={"temperature": -1.0})


def test_progress_bar_shows_eta_and_rate(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": str(i)} for i in range(3)])
    status, stdout, stderr_text = _run([*FAST, "--data", str(data), "--reward", "exact", "--batch-size", "1",
                                        "--out", str(tmp_path / "o")], capsys)
    assert status == 0
    assert "eval: 100%" in stderr_text and "3/3 samples" in stderr_text
    assert "ETA" in stderr_text and "samples/s" in stderr_text and "tokens/s" in stderr_text
    assert "wall time" in stdout


def test_suite_entry_with_a_missing_column_names_the_entry(tmp_path, capsys):
    root = tmp_path / "root"
    write_jsonl(root / "a" / "test.jsonl", [{"question": "q", "answer": "1"}])
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nbenchmarks:\n  - {name: a, path: a/test.jsonl, prompt_column: problem}\n")
    status, _, stderr_text = _run([*FAST, "--suite", str(suite), "--data-root", str(root),
                                   "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "Traceback" not in stderr_text
    assert f"{suite}: benchmarks[0] (a): " in stderr_text
    assert "field 'problem': no column 'problem' (prompt_column); available columns: question, answer" in stderr_text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--data", "hf:HuggingFaceH4/MATH-500@default:test"], "the Hugging Face Hub cannot be reached"),
        (["--data", "hf:HuggingFaceH4/MATH-500"], "no split; write hf:OWNER/NAME[@CONFIG]:SPLIT"),
        (["--data", "math501"], "math501: no such file, and not a shipped dataset; shipped: aime24"),
        (["--data", "minerva_math"], "not shipped with apmpo"),
        (["--suite", "math", "--data-source", "hub"],
         "use --data-source shipped (reads shipped:math500, no network)"),
        (["--suite", "math", "--data-source", "local"], "needs a data root: pass --data-root DIR"),
        (["--data-source", "hub", "--data", "math500"], "apply to a --suite"),
        (["--suite", "math", "--protocol", "greedy", "--n", "2"], "greedy decoding"),
    ],
)
def test_bad_data_references_exit_2_with_a_clear_message(tmp_path, capsys, offline_hub, argv, words):
    status, _, stderr_text = _run([*FAST, *argv, "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "Traceback" not in stderr_text
    assert words in stderr_text
    assert not (tmp_path / "o").exists()


def test_hub_suite_reads_a_local_datasets_folder(tmp_path, capsys, monkeypatch, offline_hub):
    """A suite entry's hub: dataset read through datasets.load_dataset from a local folder (nothing downloaded)."""
    folder = tmp_path / "org" / "tiny-math"
    write_jsonl(folder / "test.jsonl", [{"question": "1 + 1?", "answer": 2.0}, {"question": "2 + 2?", "answer": 4.0}])
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nreward: exact\nbenchmarks:\n"
                     "  - {name: t, shipped: aime24, hub: 'hf:org/tiny-math@default:test', prompt_column: problem}\n")
    monkeypatch.chdir(tmp_path)
    status, _, stderr_text = _run([*FAST, "--suite", str(suite), "--data-source", "hub", "--out", str(tmp_path / "o")],
                                  capsys)
    assert status == 0, stderr_text
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["paths"] == {"t": "hf:org/tiny-math@default:test"} and summary["data_source"] == "hub"
    record = json.loads((tmp_path / "o" / "records.jsonl").read_text().splitlines()[1])
    assert record["reference"] == "4"

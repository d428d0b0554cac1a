"""``apmpo eval``: an end-to-end run with the tiny model, bad inputs, suites."""

from __future__ import annotations

import json
import os

import pytest

from apmpo.eval.cli import main
from apmpo.eval.harness import load_suite_benchmarks
from apmpo.eval.suites import BenchmarkSpec, load_suite, parse_data_spec
from tests.helpers import TINY_MODEL, write_jsonl

TINY = TINY_MODEL
SUITE_ORDER = ["math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench"]


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_end_to_end_two_examples(tmp_path, capsys):
    data = write_jsonl(tmp_path / "gsm.jsonl", [
        {"question": "What is 2 + 3?", "answer": "It is 5.\n#### 5"},
        {"question": "What is 4 + 4?", "answer": "#### 8"},
    ])
    out = tmp_path / "out"
    argv = ["--model", TINY, "--data", f"{data}:toy", "--reward", "exact", "--n", "2", "--k", "1,2",
            "--temperature", "0.7", "--top-p", "0.95", "--max-new-tokens", "5", "--batch-size", "3",
            "--out", str(out), "--no-progress"]
    status, stdout, stderr = _run(argv, capsys)
    assert status == 0, stderr
    assert "pass@1" in stdout and "maj@2" in stdout and "toy" in stdout
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert {r["reference"] for r in records} == {"5", "8"}  # GSM8K "####" answers
    assert all(r["reason"] for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["toy"]["examples"] == 2
    assert summary["benchmarks"]["toy"]["samples"] == 4
    assert summary["settings"]["temperature"] == 0.7 and summary["settings"]["top_p"] == 0.95
    assert summary["rewards"] == {"toy": "exact_match"}
    assert summary["command"].startswith("apmpo eval --model")
    assert "sampling: the fast sampling engine" in stderr and summary["run"]["engine"] == "fast"

    # the same command again resumes: nothing is generated twice
    status, stdout, _ = _run(argv, capsys)
    assert status == 0
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    again = json.loads((out / "summary.json").read_text())
    assert again["run"]["samples_generated"] == 0 and again["run"]["samples_resumed"] == 4
    assert {k: v for k, v in again.items() if k != "run"} == {k: v for k, v in summary.items() if k != "run"}

    # samples drawn by one engine are not mixed with another's
    status, _, stderr = _run([*argv, "--engine", "hf"], capsys)
    assert status == 2 and "engine: recorded 'fast', now 'hf'" in stderr, stderr


def test_registered_in_the_apmpo_cli(tmp_path, capsys):
    from apmpo import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--help"])
    assert exit_info.value.code == 0
    assert "--temperature" in capsys.readouterr().out
    status = cli.main(["eval", "--model", TINY, "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert status == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--prompt-column", "body"], "no column 'body' (prompt_column)"),
        (["--answer-column", "solution_text"], "no column 'solution_text' (answer_column)"),
        (["--answer-from-solution", "worked"], "no column 'worked'"),
        (["--n", "2", "--k", "4", "--temperature", "1"], "k = 4 needs at least"),
        (["--n", "3"], "greedy decoding"),
        (["--reward", "nope"], "unknown reward 'nope'"),
        (["--template", "{prompt} {context}"], "uses {context}"),
    ],
)
def test_bad_input_names_the_file_and_column(tmp_path, capsys, extra, words):
    data = write_jsonl(tmp_path / "bench.jsonl", [{"question": "q", "answer": "1"}])
    status, _, stderr = _run(["--model", TINY, "--data", str(data), "--out", str(tmp_path / "o"), *extra], capsys)
    assert status == 2
    assert words in stderr
    if "column" in words:
        assert "bench.jsonl" in stderr and "available columns: question, answer" in stderr
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_bad_row_names_file_line_and_field(tmp_path, capsys):
    data = tmp_path / "bench.jsonl"
    data.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": null}\n')
    status, _, stderr = _run(["--model", TINY, "--data", str(data), "--out", str(tmp_path / "o")], capsys)
    assert status == 2
    assert "bench.jsonl: line 2, field 'answer': the answer is null" in stderr


def test_nothing_to_evaluate_and_duplicate_names(tmp_path, capsys):
    status, _, stderr = _run(["--model", TINY, "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "nothing to evaluate" in stderr
    a = write_jsonl(tmp_path / "a" / "test.jsonl", [{"question": "q", "answer": "1"}])
    b = write_jsonl(tmp_path / "b" / "a.jsonl", [{"question": "q", "answer": "1"}])
    status, _, stderr = _run(["--model", TINY, "--data", str(a), "--data", str(b), "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "two benchmarks are named a" in stderr


def test_parse_data_spec():
    assert parse_data_spec("x/math500/test.jsonl") == BenchmarkSpec(name="math500", path="x/math500/test.jsonl")
    assert parse_data_spec("x/aime.parquet:aime24") == BenchmarkSpec(name="aime24", path="x/aime.parquet")
    assert parse_data_spec("C:\\data\\set.jsonl").path == "C:\\data\\set.jsonl"
    with pytest.raises(ValueError, match="benchmark name"):
        parse_data_spec("x.jsonl:bad name")


def test_suite_errors(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("benchmarks:\n  - name: a\n    path: a/test.jsonl\n    prompt_col: q\n")
    with pytest.raises(ValueError, match=r"suite.yaml: unknown key 'benchmarks\[0\].prompt_col' \(did you mean "
                                         r"'prompt_column'\?\); known keys here: name, path"):
        load_suite(suite, data_root=tmp_path)
    suite.write_text("benchmarks:\n  - name: a\n    path: a/test.jsonl\n")
    with pytest.raises(ValueError, match="needs a data root: pass --data-root"):
        load_suite(suite)
    suite.write_text("benchmarks:\n  - name: a\n    path: a/test.jsonl\ngeneration:\n  temp: 1\n")
    with pytest.raises(ValueError, match=r"suite.yaml: generation: unknown key\(s\) temp; known keys: .*temperature"):
        load_suite(suite, data_root=tmp_path)
    with pytest.raises(ValueError, match="no benchmark named zzz; the suite has math500"):
        load_suite("math", data_root=tmp_path, only=["zzz"])
    with pytest.raises(FileNotFoundError, match="packaged suites: math"):
        load_suite(tmp_path / "none.yaml")


def test_packaged_math_suite_resolves_paths(tmp_path):
    suite = load_suite("math", data_root=tmp_path / "root")
    assert [b.name for b in suite.benchmarks] == ["math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench"]
    assert all(b.path.startswith(str(tmp_path / "root")) for b in suite.benchmarks)
    assert suite.generation["n"] == 4 and suite.reward == "math_accuracy"
    assert "\\boxed{}" in suite.template.format(prompt="x")


def test_packaged_math_suite_reads_the_shipped_copies():
    suite = load_suite("math")
    assert suite.data_source == "shipped" and [e.name for e in suite.entries] == SUITE_ORDER
    assert [b.path for b in suite.benchmarks] == ["shipped:math500", "shipped:aime24", "shipped:aime25",
                                                  "shipped:amc23", "shipped:olympiadbench"]
    assert list(suite.unavailable) == ["minerva"] and "CC BY-NC-SA" in suite.unavailable["minerva"]
    assert "--data FILE:minerva" in suite.unavailable["minerva"]
    sizes = {}
    for benchmark in load_suite_benchmarks(suite):
        sizes[benchmark.name] = len(benchmark.examples)
        assert all(e["answer"] for e in benchmark.examples)
        assert benchmark.reward_name == "math_accuracy"
        assert "\\boxed{}" in benchmark.template.format(prompt="x")
    assert sizes == {"math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "olympiadbench": 675}


def test_math_suite_sources_local_and_hub(tmp_path):
    local = load_suite("math", data_root=tmp_path)
    assert local.data_source == "local" and not local.unavailable
    assert local.benchmarks[4].path == str(tmp_path / "minerva_math" / "test.jsonl")
    assert local.benchmarks[4].answer_from_solution == "solution"
    hub = load_suite("math", data_source="hub")
    assert [b.path for b in hub.benchmarks][0] == "hf:HuggingFaceH4/MATH-500@default:test"
    assert all(b.path.startswith("hf:") and b.source == "hub" for b in hub.benchmarks)
    assert all(b.prompt_column is None and b.answer_from_solution is None for b in hub.benchmarks)  # detected
    with pytest.raises(ValueError, match="--data-root applies to --data-source local"):
        load_suite("math", data_root=tmp_path, data_source="hub")
    with pytest.raises(ValueError, match=r"benchmarks\[4\] \(minerva\): not shipped with apmpo"):
        load_suite("math", only=["minerva"])


def test_suite_benchmark_replaced_by_data(tmp_path):
    minerva = write_jsonl(tmp_path / "minerva.jsonl", [
        {"problem": "Speed of light in m/s, one significant figure?", "solution": "$\\boxed{3e8}$", "idx": 0}])
    suite = load_suite("math")
    suite.use_data(parse_data_spec(f"{minerva}:minerva"))
    assert [b.name for b in suite.benchmarks] == SUITE_ORDER and not suite.unavailable
    benchmark = load_suite_benchmarks(suite)[4]
    assert benchmark.examples[0]["answer"] == "3e8" and "\\boxed{}" in benchmark.template.format(prompt="x")
    with pytest.raises(KeyError):
        suite.use_data(parse_data_spec(f"{minerva}:nope"))


def test_suite_with_cli_overrides(tmp_path, capsys):
    root = tmp_path / "root"
    write_jsonl(root / "s" / "test.jsonl", [{"problem": "p1", "answer": 3.0}, {"problem": "p2", "answer": 4.0}])
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: mini\nprompt:\n  template: 'Solve: {prompt}'\nreward: exact_match\n"
        "generation:\n  n: 2\n  k: [1, 2]\n  temperature: 0.9\n  max_new_tokens: 4\n"
        "benchmarks:\n  - name: s\n    path: s/test.jsonl\n"
    )
    out = tmp_path / "out"
    status, _, stderr = _run(["--model", TINY, "--suite", str(suite), "--data-root", str(root),
                                   "--temperature", "0.5", "--limit", "1", "--out", str(out), "--no-progress"], capsys)
    assert status == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["n"] == 2 and summary["settings"]["temperature"] == 0.5  # flag beats suite
    assert summary["benchmarks"]["s"]["examples"] == 1
    assert summary["suite"] == str(suite)
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert "Solve: p1" in record["prompt"] and record["reference"] == "3"


@pytest.mark.slow
def test_kill_and_resume_in_a_subprocess(tmp_path):
    """SIGKILL a real `python -m apmpo.eval` run mid-way, rerun it, compare with an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    data = write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": str(i)} for i in range(40)])

    def command(out):
        return [sys.executable, "-m", "apmpo.eval", "--model", TINY, "--data", f"{data}:d", "--reward", "exact",
                "--n", "4", "--k", "1,4", "--temperature", "1", "--max-new-tokens", "24", "--batch-size", "4",
                "--out", str(out), "--no-progress"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "full"), check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    process = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or len(records.read_bytes().splitlines()) < 40):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(records.read_bytes().splitlines())
    assert 0 < written < 160, "the kill should land mid-run"
    subprocess.run(command(out), check=True, env=env, capture_output=True)
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["run"]["samples_resumed"] > 0
    strip = lambda s: {k: v for k, v in s.items() if k not in ("run", "command")}
    assert strip(resumed) == strip(full)
    lines = records.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 160


def test_sigterm_keeps_the_records_and_the_run_resumes(tmp_path):
    """SIGTERM to a real `python -m apmpo.eval` mid-way: exit 75, every finished batch kept, a rerun completes."""
    import signal
    import subprocess
    import sys
    import time

    data = write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": str(i)} for i in range(20)])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "apmpo.eval", "--model", TINY, "--data", f"{data}:d", "--reward", "exact",
               "--n", "4", "--k", "1,4", "--temperature", "1", "--max-new-tokens", "16", "--batch-size", "4",
               "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or len(records.read_bytes().splitlines()) < 12):
        time.sleep(0.02)
    before = records.read_bytes()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 75, err
    assert err.strip().splitlines()[-1] == (f"apmpo eval: stopped by SIGTERM; the finished batches are saved in {out}: "
                                            "run the same command again to resume")
    after = records.read_bytes()
    # A batch seen while it is being appended (before its fsync returned) may be cut back by the stop: every
    # batch before it was finished, so it is kept.
    seen = before[: before.rfind(b"\n") + 1].splitlines(keepends=True)
    kept = b"".join(seen[: max(len(seen) // 4 * 4 - 4, 0)])
    assert kept and after.startswith(kept) and after.endswith(b"\n") and len(after.splitlines()) % 4 == 0  # whole batches
    assert len(after.splitlines()) < 80, "the signal should land mid-run"
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["samples_resumed"] == len(after.splitlines())
    lines = records.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 80

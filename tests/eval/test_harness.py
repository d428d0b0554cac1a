"""The harness with a tiny random model: records, summary, resume after an interruption."""

from __future__ import annotations

import errno
import json

import pytest
import torch

import apmpo.io as io_module
from apmpo.eval import harness
from apmpo.eval.harness import (
    Benchmark,
    EvalSettings,
    evaluate,
    evaluate_examples,
    format_table,
    load_benchmark,
)
from apmpo.eval.records import RecordsFile
from apmpo.eval.suites import parse_data_spec
from apmpo.io import StorageError
from apmpo.settings import build_settings
from tests.faults import FailingOs

from .conftest import FirstCharReward

SETTINGS = {"n": 4, "k": [1, 2, 4], "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 6, "batch_size": 3, "seed": 7}


def _benchmarks(toy_files):
    reward = FirstCharReward()
    a, b = toy_files
    return [
        load_benchmark(parse_data_spec(f"{a}:alpha"), reward=reward),
        load_benchmark(parse_data_spec(f"{b}:beta"), reward=reward),
    ]


def _without_run(summary):
    return {k: v for k, v in summary.items() if k != "run"}


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_records_and_summary(tiny, toy_files, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "out"
    result = evaluate(model, tokenizer, _benchmarks(toy_files), EvalSettings(**SETTINGS), out_dir=out,
                      model_name="tiny", progress=False)
    records = [json.loads(line) for line in _lines(out / "records.jsonl")]
    assert len(records) == (3 + 2) * 4
    keys = {(r["benchmark"], r["example_index"], r["sample_index"]) for r in records}
    assert len(keys) == len(records)
    first = next(r for r in records if r["benchmark"] == "beta")
    for name in ("prompt", "completion", "reference", "extracted", "score", "reason", "completion_tokens", "truncated"):
        assert name in first
    assert first["reference"] == "0"  # OlympiadBench-style list answer normalised
    assert records[0]["example_id"] == 0  # the file's id column
    assert all(r["completion_tokens"] <= 6 for r in records)

    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["metrics"] == ["pass@1", "pass@2", "pass@4", "maj@2", "maj@4"]
    assert summary["decoding"] == "sampled"
    # recompute Pass@1 of alpha from the records by hand
    alpha = [r for r in records if r["benchmark"] == "alpha"]
    per_example = [
        sum(r["score"] >= 1.0 for r in alpha if r["example_index"] == i) / 4 for i in range(3)
    ]
    assert summary["benchmarks"]["alpha"]["pass@1"] == pytest.approx(sum(per_example) / 3)
    assert summary["benchmarks"]["alpha"]["examples"] == 3
    overall = summary["overall"]["pass@1"]
    assert overall == pytest.approx((summary["benchmarks"]["alpha"]["pass@1"] + summary["benchmarks"]["beta"]["pass@1"]) / 2)
    assert 0.0 < summary["all"]["pass@1"] < 1.0  # the fake verifier is neither always right nor wrong
    assert summary["run"]["samples_generated"] == 20
    table = format_table(summary)
    assert "alpha" in table and "maj@4" in table and "average (macro)" in table


def test_generation_leaves_caller_rng_untouched(tiny, toy_files):
    model, tokenizer = tiny
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate(model, tokenizer, _benchmarks(toy_files)[:1], EvalSettings(**SETTINGS), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_resume_after_interruption_gives_identical_results(tiny, toy_files, tmp_path, monkeypatch):
    model, tokenizer = tiny
    settings = EvalSettings(**SETTINGS)
    reference = evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=tmp_path / "full",
                         model_name="tiny", progress=False)

    calls = {"n": 0}
    original = harness._generate

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "resumed"
    torch.manual_seed(1)  # the caller's RNG state must not matter: each batch has its own seed
    monkeypatch.setattr(harness, "_generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=out, model_name="tiny", progress=False)
    assert len(_lines(out / "records.jsonl")) == 3 * 3  # three whole batches of three samples
    assert not (out / "summary.json").exists()

    monkeypatch.setattr(harness, "_generate", original)
    calls["n"] = 0
    generated_batches = []
    monkeypatch.setattr(harness, "_generate", lambda *a, **k: generated_batches.append(1) or original(*a, **k))
    torch.manual_seed(2)
    resumed = evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=out, model_name="tiny",
                       progress=False)
    assert resumed.summary["run"]["samples_resumed"] == 9
    assert resumed.summary["run"]["samples_generated"] == 11
    assert len(generated_batches) == 4  # alpha: 4 batches (12 samples), 3 done; beta: 3 batches (8 samples)
    assert _without_run(resumed.summary) == _without_run(reference.summary)
    lines = _lines(out / "records.jsonl")
    assert len(lines) == 20 and len(set(lines)) == 20
    assert sorted(lines) == sorted(_lines(tmp_path / "full" / "records.jsonl"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
def test_a_full_disk_keeps_the_records_and_the_run_resumes(tiny, toy_files, tmp_path, monkeypatch, code):
    model, tokenizer = tiny
    settings = EvalSettings(**SETTINGS)
    reference = evaluate(model, tokenizer, _benchmarks(toy_files), settings, progress=False)
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patched.setattr(io_module, "os", FailingOs("records.jsonl", code, skip=2))  # the third batch's append fails
        with pytest.raises(StorageError) as caught:
            evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=out, model_name="tiny", progress=False)
    records = out / "records.jsonl"
    assert f"appending to {records} failed" in str(caught.value) and "it needs about" in str(caught.value)
    assert len(_lines(records)) == 2 * 3 and records.read_bytes().endswith(b"\n")  # two whole batches, no torn line
    resumed = evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=out, model_name="tiny", progress=False)
    assert resumed.summary["run"]["samples_resumed"] == 6
    assert _without_run(resumed.summary)["overall"] == _without_run(reference.summary)["overall"]
    assert [r["completion"] for r in resumed.records] == [r["completion"] for r in reference.records]


def test_a_nan_score_is_refused_naming_the_reward_and_the_sample(tiny, toy_files, tmp_path):
    model, tokenizer = tiny
    calls = {"n": 0}

    def flaky(completions, **columns):
        calls["n"] += 1
        return [float("nan") if calls["n"] == 2 and i == 1 else 1.0 for i in range(len(completions))]

    benchmark = Benchmark(name="alpha", examples=[{"prompt": f"p{i}", "answer": "1"} for i in range(3)], reward=flaky)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"reward 'flaky' returned a non-finite score nan for benchmark 'alpha' "
                                         r"example 1, sample 0"):
        evaluate(model, tokenizer, [benchmark], EvalSettings(**SETTINGS), out_dir=out, progress=False)
    assert len(_lines(out / "records.jsonl")) == 3  # the first batch is kept; nothing of the refused one


def test_seed_selects_the_samples(tiny, toy_files):
    model, tokenizer = tiny
    benchmarks = _benchmarks(toy_files)[:1]

    def completions(seed):
        settings = EvalSettings(**{**SETTINGS, "seed": seed})
        return [r["completion"] for r in evaluate(model, tokenizer, benchmarks, settings, progress=False).records]

    first = completions(7)
    assert len(set(first)) > 1  # samples of one batch differ from each other
    assert completions(7) == first
    assert completions(8) != first


def test_torn_last_line_is_redone(tiny, toy_files, tmp_path):
    model, tokenizer = tiny
    settings = EvalSettings(**SETTINGS)
    out = tmp_path / "out"
    reference = evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=out, model_name="tiny",
                         progress=False)
    path = out / "records.jsonl"
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + 25])  # a kill in the middle of the last line
    resumed = evaluate(model, tokenizer, _benchmarks(toy_files), settings, out_dir=out, model_name="tiny",
                       progress=False)
    assert resumed.summary["run"]["samples_generated"] == 1
    assert _without_run(resumed.summary) == _without_run(reference.summary)
    assert path.read_bytes() == data  # the same record, written again, whole


def test_resume_refuses_a_different_configuration(tiny, toy_files, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "out"
    benchmarks = _benchmarks(toy_files)[:1]
    evaluate(model, tokenizer, benchmarks, EvalSettings(**SETTINGS), out_dir=out, model_name="tiny", progress=False)
    with pytest.raises(ValueError, match=r"temperature: recorded 1.0, now 0.5"):
        evaluate(model, tokenizer, benchmarks, EvalSettings(**{**SETTINGS, "temperature": 0.5}), out_dir=out,
                 model_name="tiny", progress=False)
    changed = [Benchmark(**{**benchmarks[0].__dict__, "template": "Q: {prompt}"})]
    with pytest.raises(ValueError, match="recorded prompt differs"):
        evaluate(model, tokenizer, changed, EvalSettings(**SETTINGS), out_dir=out, model_name="tiny", progress=False)


def test_greedy_records_are_the_same_with_either_engine(tiny, toy_files, tmp_path):
    """Greedy evaluation through the fast engine gives generate's completions token for token."""
    model, tokenizer = tiny
    greedy = {"n": 1, "k": [1], "temperature": 0.0, "max_new_tokens": 8, "batch_size": 2}
    results = {
        engine: evaluate(model, tokenizer, _benchmarks(toy_files), EvalSettings(**greedy, engine=engine),
                         out_dir=tmp_path / engine, model_name="tiny", progress=False)
        for engine in ("fast", "hf")
    }
    fast, hf = results["fast"].records, results["hf"].records
    assert len(fast) == 5 and fast == hf
    assert {e: results[e].summary["run"]["engine"] for e in results} == {"fast": "fast", "hf": "hf"}
    assert json.loads((tmp_path / "fast" / "run.json").read_text())["engine"] == "fast"


def test_smaller_n_and_limit_reuse_records(tiny, toy_files, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "out"
    benchmarks = _benchmarks(toy_files)[:1]
    evaluate(model, tokenizer, benchmarks, EvalSettings(**SETTINGS), out_dir=out, model_name="tiny", progress=False)
    smaller = EvalSettings(**{**SETTINGS, "n": 2, "k": [1, 2], "limit": 2})
    result = evaluate(model, tokenizer, benchmarks, smaller, out_dir=out, model_name="tiny", progress=False)
    assert result.summary["run"]["samples_generated"] == 0
    assert result.summary["benchmarks"]["alpha"]["examples"] == 2
    assert result.summary["benchmarks"]["alpha"]["samples"] == 4
    assert len(result.records) == 4


def test_greedy_is_deterministic_and_in_memory(tiny):
    model, tokenizer = tiny
    examples = [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+2?", "answer": "4"}]
    settings = EvalSettings(n=1, temperature=0.0, max_new_tokens=5, batch_size=2)
    first = evaluate_examples(model, tokenizer, examples, settings, reward=FirstCharReward())
    second = evaluate_examples(model, tokenizer, examples, settings, reward=FirstCharReward())
    assert [r["completion"] for r in first.records] == [r["completion"] for r in second.records]
    assert first.summary["decoding"] == "greedy"
    assert first.out_dir is None
    # the fake verifier marks a completion correct when its length is even: Pass@1 is that fraction
    expected = sum(len(r["completion"]) % 2 == 0 for r in first.records) / len(first.records)
    assert first.metric("pass@1") == expected
    assert [r["score"] for r in first.records] == [float(len(r["completion"]) % 2 == 0) for r in first.records]


def test_plain_trl_reward_callable(tiny):
    model, tokenizer = tiny
    examples = [{"prompt": "1+1?", "answer": "2"}]

    def always_half(completions, answer, **kwargs):
        return [0.5 for _ in completions]

    settings = EvalSettings(n=2, temperature=1.0, max_new_tokens=3, correct_threshold=0.5)
    result = evaluate_examples(model, tokenizer, examples, settings, reward=always_half)
    assert result.records[0]["reason"] == "score from always_half"
    assert result.metric("pass@1") == 1.0
    assert result.summary["all"]["mean_score"] == 0.5


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"n": 2, "k": [4]}, "k: k = 4 needs at least"),
        ({"n": 2, "temperature": 0.0}, "greedy decoding"),
        ({"top_p": 0.0}, r"top_p: must be a finite number in \(0, 1\], got 0.0"),
        ({"batch_size": 0}, "batch_size: must be an integer >= 1, got 0"),
        ({"k": "1,x"}, r"k\[1\]: expected an integer >= 1, got 'x'"),
        ({"temperature": -1.0}, "temperature: must be a finite number >= 0, got -1.0"),
        ({"temperature": float("inf")}, "temperature: must be a finite number >= 0, got inf"),
        ({"correct_threshold": float("nan")}, "correct_threshold: must be a finite number, got nan"),
        ({"seed": -3}, "seed: must be an integer in"),
        ({"limit": 0}, "limit: must be an integer >= 1, got 0"),
    ],
)
def test_settings_are_checked(changes, words):
    with pytest.raises(ValueError, match=words):
        build_settings(EvalSettings, {**SETTINGS, **changes})
    with pytest.raises(ValueError):  # constructed in code: pydantic's own message, same checks
        EvalSettings(**{**SETTINGS, **changes})


def test_records_file_rejects_corruption_in_the_middle(tmp_path):
    path = tmp_path / "records.jsonl"
    good = json.dumps({"benchmark": "a", "example_index": 0, "sample_index": 0})
    path.write_text(good + "\n{broken\n" + good.replace('"sample_index": 0', '"sample_index": 1') + "\n")
    with pytest.raises(ValueError, match=r"records.jsonl: line 2: malformed record"):
        RecordsFile(path).load()
    path.write_text(good + "\n" + good + "\n")
    with pytest.warns(UserWarning, match="line 2: duplicate record"):
        assert len(RecordsFile(path).load()) == 1


def test_scoring_with_the_real_rewards():
    import functools

    from apmpo import rewards

    examples = [{"prompt": "p", "answer": "5"}, {"prompt": "p", "answer": "5"}, {"prompt": "p", "answer": "\\frac{1}{2}"}]
    completions = ["so the result is \\boxed{5}.", "I think it is 7", "hence \\boxed{\\frac{1}{2}}"]
    scored = harness._score_batch("math_accuracy", completions, examples)
    assert [s for s, _, _ in scored] == [1.0, 0.0, 1.0]
    assert [e for _, _, e in scored] == ["5", None, "\\frac{1}{2}"]
    assert "correct" in scored[0][1] and "no final answer" in scored[1][1]
    assert harness._score_batch("math", completions, examples) == scored  # config name works too

    # exact_match falls back to the last number; a bound option (as the trainer binds them) is honoured
    loose = harness._score_batch("exact", completions[:2], examples[:2])
    assert [(s, e) for s, _, e in loose] == [(1.0, "5"), (0.0, "7")]
    strict = functools.wraps(rewards.exact_match)(functools.partial(rewards.exact_match, last_number=False))
    bound = harness._score_batch(strict, completions[:2], examples[:2])
    assert [(s, e) for s, _, e in bound] == [(1.0, "5"), (0.0, None)]
    assert "no final answer" in bound[1][1]

    with pytest.raises(ValueError, match="unknown reward 'nope'; known rewards: .*math_accuracy"):
        harness.resolve_reward("nope")


def test_a_second_writer_is_refused(tiny, toy_files, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    model, tokenizer = tiny
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another process's run, as far as flock is concerned
        with pytest.raises(ValueError, match="another evaluation is writing to this directory"):
            evaluate(model, tokenizer, _benchmarks(toy_files)[:1], EvalSettings(**SETTINGS), out_dir=out,
                     progress=False)
    assert not (out / "records.jsonl").exists()


def test_benchmark_fields_are_checked():
    with pytest.raises(ValueError, match="use_chat_template must be True, False or 'auto'"):
        Benchmark(name="x", examples=[{"prompt": "p", "answer": "1"}], use_chat_template="yes")
    with pytest.raises(ValueError, match="benchmark 'x': unknown reward 'nope'"):
        evaluate(None, None, [Benchmark(name="x", examples=[{"prompt": "p", "answer": "1"}], reward="nope")])

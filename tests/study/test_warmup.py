"""The supervised warm-up: what it trains on, what it saves, when it reuses and when it refuses."""

from __future__ import annotations

import json

import pytest
import torch

from apmpo.study.warmup import (
    WarmupConfig,
    WarmupError,
    _accuracy,
    _encode_batch,
    _split_validation,
    ensure_warmup,
    warmup_config_from_dict,
)
from apmpo.trainer.config import config_from_dict
from apmpo.trainer.setup import build_rewards, load_data
from tests.helpers import TINY_MODEL

from .conftest import toy_study


def _train_config(tmp_path):
    return config_from_dict(toy_study(tmp_path)["train"])


def test_labels_cover_only_the_answer_and_eos():
    from apmpo.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    ids, mask, labels = _encode_batch(tok, ["1 + 2=", "10 + 22="], ["3", "32"], add_special_tokens=False)
    assert ids.shape == mask.shape == labels.shape == (2, 11)
    row0 = labels[0][labels[0] != -100].tolist()
    assert row0 == [tok.convert_tokens_to_ids("3"), tok.eos_token_id]
    assert tok.decode(labels[1][labels[1] != -100][:-1].tolist()) == "32"
    assert mask[0].sum() == len("1 + 2=") + 2 and mask[1].sum() == len("10 + 22=") + 3
    assert (ids[0, mask[0].sum():] == tok.pad_token_id).all()      # right padding for training


def test_validation_prompts_never_appear_in_the_warmup_data():
    examples = [{"prompt": f"{i % 30}", "answer": str(i % 30)} for i in range(300)]    # every prompt 10 times
    prompts = [e["prompt"] for e in examples]
    held, kept, kept_prompts = _split_validation(examples, prompts, 5, seed=0)
    assert len(held) == 5 and len({e["prompt"] for e in held}) == 5
    assert not {e["prompt"] for e in held} & set(kept_prompts)
    assert len(kept) == 300 - 5 * 10
    assert _split_validation(examples, prompts, 5, seed=0)[0] == held
    assert _split_validation(examples, prompts, 5, seed=1)[0] != held
    with pytest.raises(WarmupError, match="only 30 distinct"):
        _split_validation(examples, prompts, 31, seed=0)


def test_warmup_saves_reuses_and_refuses_other_settings(tmp_path):
    from apmpo.models import load_model_and_tokenizer

    train_config = _train_config(tmp_path)
    config = WarmupConfig(model=TINY_MODEL, max_steps=3, batch_size=8, eval_every=3, target_accuracy=1.0,
                          accuracy_range=None, train_size=64, validation_size=8)
    logs = []
    result = ensure_warmup(config, train_config, tmp_path / "w", log=logs.append)
    assert not result.reused and result.steps == 3 and len(result.history) == 1
    record = json.loads((tmp_path / "w" / "warmup.json").read_text())
    assert record["steps"] == 3 and record["settings"]["model"] == TINY_MODEL
    assert record["heldout_accuracy"] == result.heldout_accuracy

    # the saved directory is a model the trainer can load, with the trained (not the initial) weights
    saved, tok = load_model_and_tokenizer(str(result.model_dir))
    initial, _ = load_model_and_tokenizer(TINY_MODEL, seed=0)
    trained = dict(saved.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in initial.named_parameters())
    assert tok("7 + 1=", add_special_tokens=False)["input_ids"] == \
        load_model_and_tokenizer(TINY_MODEL)[1]("7 + 1=", add_special_tokens=False)["input_ids"]
    # the recorded held-out accuracy is the saved model's, measured as a training run measures its step 0
    data = load_data(train_config.data, tok, config.seed)
    verifier = build_rewards(train_config.reward, data.default_reward).verifier()
    assert _accuracy(saved, tok, data.eval, data, train_config, verifier) == result.heldout_accuracy

    again = ensure_warmup(config, train_config, tmp_path / "w", log=logs.append)
    assert again.reused and again.steps == 3 and "reusing" in logs[-1]
    other = WarmupConfig(**{**config.__dict__, "lr": 1e-3})
    with pytest.raises(WarmupError, match="other settings"):
        ensure_warmup(other, train_config, tmp_path / "w", log=logs.append)


def test_warmup_outside_the_accuracy_range_fails_with_advice(tmp_path):
    config = WarmupConfig(model=TINY_MODEL, max_steps=2, batch_size=4, eval_every=2, train_size=64,
                          validation_size=8, accuracy_range=[0.5, 0.9])
    with pytest.raises(WarmupError, match="outside warmup.accuracy_range.*raise warmup.max_steps"):
        ensure_warmup(config, _train_config(tmp_path), tmp_path / "w", log=lambda _: None)
    assert not (tmp_path / "w" / "model").exists()


def test_warmup_settings_are_checked():
    assert warmup_config_from_dict({"lr": 1, "accuracy_range": None}).lr == 1.0
    with pytest.raises(WarmupError, match="warmup: batch_size: expected an integer >= 1, got 'many'"):
        warmup_config_from_dict({"batch_size": "many"})
    with pytest.raises(WarmupError, match=r"validation_size: must be smaller than train_size \(50\), got 100"):
        warmup_config_from_dict({"validation_size": 100, "train_size": 50})
    with pytest.raises(WarmupError, match="accuracy_range"):
        warmup_config_from_dict({"accuracy_range": [0.6, 0.2]})

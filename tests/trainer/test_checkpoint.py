"""Checkpoints: round trip, atomicity (a half-written checkpoint is never used), pruning, RNG states."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from apmpo.models import tiny_model
from apmpo.trainer import checkpoint as ckpt
from apmpo.trainer.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _trained(seed=0):
    model, tok = tiny_model(seed=seed, num_hidden_layers=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: 1.0 / (u + 1))
    ids = torch.randint(0, len(tok), (2, 5), generator=torch.Generator().manual_seed(seed))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    sched.step()
    return model, tok, opt, sched


def test_round_trip(tmp_path):
    model, tok, opt, sched = _trained()
    path = save_checkpoint(tmp_path, 3, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                           state={"prompts_consumed": 24, "controller_history": [{"step": 1, "p": 0.9}]})
    assert path.name == "step-000003" and latest_checkpoint(tmp_path) == path
    fresh, _ = tiny_model(seed=1, num_hidden_layers=1)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda u: 1.0 / (u + 1))
    state = load_checkpoint(path, model=fresh, optimizer=opt2, scheduler=sched2)
    assert state["step"] == 3 and state["prompts_consumed"] == 24 and state["controller_history"][0]["p"] == 0.9
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), n
    assert sched2.state_dict()["last_epoch"] == 1
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    # the checkpoint is also a plain Hugging Face model directory
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(path)
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_rng_states_round_trip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_interrupted_write_is_never_used(tmp_path, monkeypatch):
    model, _, opt, sched = _trained()
    good = save_checkpoint(tmp_path, 2, model=model, optimizer=opt, scheduler=sched, state={"prompts_consumed": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 4, model=model, optimizer=opt, scheduler=sched, state={})
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == good
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000002"]  # temp dir cleaned up

    # a process killed mid-write leaves a temporary directory; a copied-in directory may lack the marker
    root = tmp_path / "checkpoints"
    (root / ".step-000006.tmp-abc").mkdir()
    (root / ".step-000006.tmp-abc" / "model.safetensors").write_bytes(b"partial")
    (root / "step-000008").mkdir()
    (root / "step-000008" / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == good
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(root / "step-000008", model=model)
    save_checkpoint(tmp_path, 10, model=model, optimizer=opt, scheduler=sched, state={}, keep_last=5)
    assert not (root / ".step-000006.tmp-abc").exists()  # leftovers removed by the next save
    assert latest_checkpoint(tmp_path).name == "step-000010"


def test_keep_last(tmp_path):
    model = _trained()[0]
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model=model, state={}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


def test_resume_needs_optimizer_state(tmp_path):
    model, _, opt, _ = _trained()
    path = save_checkpoint(tmp_path, 1, model=model, state={})
    with pytest.raises(ValueError, match="saved without optimizer/RNG state"):
        load_checkpoint(path, model=model, optimizer=opt)


def test_mismatched_weights_are_refused(tmp_path):
    model = _trained()[0]
    path = save_checkpoint(tmp_path, 1, model=model, state={})
    other, _ = tiny_model(seed=0, num_hidden_layers=2)
    with pytest.raises(ValueError, match="checkpoint lacks weights"):
        load_checkpoint(path, model=other, restore_rng=False)

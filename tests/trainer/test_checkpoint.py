"""Checkpoints: round trip, atomicity (a half-written checkpoint is never used), pruning, RNG states, full disks."""

from __future__ import annotations

import builtins
import errno
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers.modeling_utils as modeling_utils
from safetensors import SafetensorError

import apmpo.io as io_module
from apmpo.io import StorageError, human_bytes
from apmpo.models import tiny_model
from apmpo.trainer import checkpoint as ckpt
from apmpo.trainer.checkpoint import (
    checkpoint_bytes,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from tests.faults import FailingOs, disk_error


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


# --------------------------------------------------------------------------- full disk / failing device


def _fail_open(monkeypatch, name, code=errno.ENOSPC):
    """builtins.open: opening ``name`` for writing fails as on a full disk (how transformers writes its JSON files)."""
    real = builtins.open

    def fake(file, mode="r", *args, **kwargs):
        if Path(str(file)).name == name and any(c in mode for c in "wax"):
            raise disk_error(code)
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake)


def _fail_write_text(monkeypatch, name, code=errno.ENOSPC):
    real = Path.write_text

    def fake(self, *args, **kwargs):
        if self.name == name:
            raise disk_error(code)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fake)


def _fail_safetensors(monkeypatch, code=errno.ENOSPC):
    def fake(*args, **kwargs):  # what safetensors raises when the disk fills up (checked on a real full tmpfs)
        raise SafetensorError(f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})")

    monkeypatch.setattr(modeling_utils, "safe_save_file", fake)


def _fail_torch_save(monkeypatch, code=None):
    def fake(*args, **kwargs):  # what torch.save raises on a full disk: no errno, only the free space tells
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(ckpt.torch, "save", fake)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 100, 100))


FAULTS = {
    "model.safetensors": lambda m, code: _fail_safetensors(m, code),
    "config.json": lambda m, code: _fail_open(m, "config.json", code),
    "generation_config.json": lambda m, code: _fail_open(m, "generation_config.json", code),
    "tokenizer_config.json": lambda m, code: _fail_open(m, "tokenizer_config.json", code),
    "trainer_state.pt": lambda m, code: _fail_torch_save(m),
    "trainer_state.json": lambda m, code: _fail_write_text(m, "trainer_state.json", code),
    "COMPLETE": lambda m, code: _fail_write_text(m, "COMPLETE", code),
    "fsync of a file": lambda m, code: m.setattr(io_module, "os", FailingOs(code=code, fail={"fsync": 2})),
    "rename into place": lambda m, code: m.setattr(io_module, "os", FailingOs(code=code, fail={"rename": 1})),
}


@pytest.mark.parametrize("point, code", [
    (point, code) for point in sorted(FAULTS) for code in (errno.ENOSPC, errno.EIO)
    if not (point == "trainer_state.pt" and code == errno.EIO)  # torch.save gives no code: only a full disk is seen
], ids=lambda v: errno.errorcode.get(v, v) if isinstance(v, int) else v)
def test_a_failed_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch, point, code):
    model, tok, opt, sched = _trained()
    good = save_checkpoint(tmp_path, 2, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                           state={"prompts_consumed": 1})
    size = sum(f.stat().st_size for f in good.rglob("*") if f.is_file())
    with monkeypatch.context() as patched:
        FAULTS[point](patched, code)
        with pytest.raises(StorageError) as caught:
            save_checkpoint(tmp_path, 4, model=model, tokenizer=tok, optimizer=opt, scheduler=sched, state={})
    text = str(caught.value)
    why = "the disk is full" if code == errno.ENOSPC or point == "trainer_state.pt" else "the device reported an I/O error"
    assert text.startswith(f"writing the checkpoint {tmp_path / 'checkpoints' / 'step-000004'} failed: {why}")
    assert f"it needs about {human_bytes(size)}" in text and "free on that file system" in text
    assert f"The previous checkpoint {good} is intact: free some space and resume from it with --resume" in text
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000002"]  # no temporary directory left
    fresh, _, opt2, sched2 = _trained(seed=1)
    assert load_checkpoint(latest_checkpoint(tmp_path), model=fresh, optimizer=opt2, scheduler=sched2)["step"] == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


def test_a_failed_resave_puts_the_old_directory_back(tmp_path, monkeypatch):
    model, tok, opt, sched = _trained()
    good = save_checkpoint(tmp_path, 2, model=model, optimizer=opt, scheduler=sched, state={"prompts_consumed": 7})
    with monkeypatch.context() as patched:
        patched.setattr(io_module, "os", FailingOs(code=errno.EIO, fail={"rename": 2}))  # final -> trash works, tmp -> final fails
        with pytest.raises(StorageError, match="the device reported an I/O error"):
            save_checkpoint(tmp_path, 2, model=model, optimizer=opt, scheduler=sched, state={"prompts_consumed": 9})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000002"]
    assert load_checkpoint(good, model=model, optimizer=opt)["prompts_consumed"] == 7


def test_the_first_checkpoint_estimates_its_size_from_the_tensors(tmp_path, monkeypatch):
    model, tok, opt, sched = _trained()
    expected = checkpoint_bytes(None, model, opt)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    assert params * 3 <= expected <= params * 3 + 10_000  # weights + AdamW's two moments (+ step counters)
    with monkeypatch.context() as patched:
        _fail_safetensors(patched)
        with pytest.raises(StorageError) as caught:
            save_checkpoint(tmp_path, 1, model=model, optimizer=opt, scheduler=sched, state={})
    assert f"it needs about {human_bytes(expected)}" in str(caught.value)
    assert "There is no earlier checkpoint" in str(caught.value)
    assert list((tmp_path / "checkpoints").iterdir()) == []

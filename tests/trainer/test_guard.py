"""The non-finite guard: a NaN or infinite loss, gradient or reward never changes the weights or the optimizer."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from apmpo.cli import main
from apmpo.models import tiny_model
from apmpo.trainer import guard as guard_module
from apmpo.trainer import loop as loop_module
from apmpo.trainer import step as step_module
from apmpo.trainer.checkpoint import latest_checkpoint, list_checkpoints, load_model_weights
from apmpo.trainer.config import ConfigError, validate_config
from apmpo.trainer.guard import NonFiniteError, UpdateGuard
from apmpo.trainer.loop import train
from apmpo.trainer.setup import build_optimizer, build_scheduler
from apmpo.trainer.step import optimizer_step
from apmpo.trainer.tracking import read_jsonl

from .conftest import tiny_config

NAN = float("nan")


def digit_fraction(completions, **columns):
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


REWARD = {"digits": digit_fraction}


# --------------------------------------------------------------------------- the unit: step.optimizer_step


def _setup(tmp_path, **config_overrides):
    """A model, its tokenizer, optimizer and schedule, and the part of a TrainingRun that optimizer_step uses."""
    config = tiny_config(tmp_path, *[f"{k}={v}" for k, v in config_overrides.items()])
    model, tok = tiny_model(seed=0, num_hidden_layers=1)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, 10)
    guard = UpdateGuard.for_config(model, config, tmp_path)
    run = SimpleNamespace(config=config, trainable=[p for p in model.parameters() if p.requires_grad],
                          optimizer=optimizer, scheduler=scheduler, guard=guard)
    return model, tok, optimizer, scheduler, run


def _backward(model, tok, seed=0) -> float:
    ids = torch.randint(0, len(tok), (2, 6), generator=torch.Generator().manual_seed(seed))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return float(loss.detach())


def _snapshot(model, optimizer):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()["state"])


def _assert_same(before, model, optimizer):
    weights, state = before
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    now = optimizer.state_dict()["state"]
    assert now.keys() == state.keys()
    for key in state:
        for field, value in state[key].items():  # exp_avg, exp_avg_sq and AdamW's step counter
            assert torch.equal(now[key][field], value), (key, field)


def test_finite_update_is_the_plain_clip_and_step(tmp_path):
    model, tok, optimizer, scheduler, run = _setup(tmp_path, **{"optim.max_grad_norm": 0.01})
    twin, _ = tiny_model(seed=0, num_hidden_layers=1)
    twin_opt = build_optimizer(twin, tiny_config(tmp_path).optim)
    for seed in range(3):
        norm = optimizer_step(run, _backward(model, tok, seed))
        _backward(twin, tok, seed)
        reference = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.01)
        twin_opt.step()
        twin_opt.zero_grad(set_to_none=True)
        assert norm == float(reference)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    metrics: dict = {}
    run.guard.end_step(metrics)
    assert metrics == {"skipped_nonfinite": 0} and run.guard.streak == 0


@pytest.mark.parametrize("split", [True, False], ids=["torch>=2.6", "clip_grad_norm_ fallback"])
@pytest.mark.parametrize("fault", ["nan loss", "nan gradient", "inf gradient"])
def test_a_non_finite_update_changes_nothing(tmp_path, monkeypatch, fault, split):
    monkeypatch.setattr(guard_module, "_SPLIT_CLIP", split)
    model, tok, optimizer, scheduler, run = _setup(tmp_path, **{"optim.warmup_steps": 4})
    optimizer_step(run, _backward(model, tok, 0))  # a first real update: AdamW has moments and a step count
    before = _snapshot(model, optimizer)
    lr_before = scheduler.get_last_lr()[0]
    loss = _backward(model, tok, 1)
    target = "model.layers.0.mlp.up_proj.weight"
    param = dict(model.named_parameters())[target]
    if fault == "nan loss":
        loss = NAN
    else:
        param.grad[0, 0] = NAN if fault == "nan gradient" else math.inf
    norm = optimizer_step(run, loss)
    assert not math.isfinite(norm) or fault == "nan loss"
    _assert_same(before, model, optimizer)
    assert all(p.grad is None for p in model.parameters())
    assert scheduler.last_epoch == 2 and scheduler.get_last_lr()[0] == pytest.approx(lr_before * 3 / 2)  # warm-up went on
    metrics: dict = {}
    run.guard.end_step(metrics)
    assert metrics["skipped_nonfinite"] == 1 and run.guard.streak == 1
    if fault == "nan loss":
        assert metrics["nonfinite_reason"] == "the loss is NaN"
    elif split:
        assert metrics["nonfinite_reason"] == f"the gradient of {target} is {'NaN' if 'nan' in fault else 'infinite'}"
    elif fault == "inf gradient":  # old torch scales the gradients by max_norm / inf = 0 first: inf * 0 = NaN
        assert metrics["nonfinite_reason"] == f"the gradient of {target} is NaN"
    else:  # ... and by a NaN norm: every gradient is NaN, the first parameter is named, with a count
        assert metrics["nonfinite_reason"].startswith("the gradient of model.embed_tokens.weight is NaN (and ")
    optimizer_step(run, _backward(model, tok, 2))  # the next finite update goes through
    assert not torch.equal(model.state_dict()[target], before[0][target])


def test_consecutive_bad_steps_stop_the_run_and_a_good_one_resets(tmp_path):
    model, tok, optimizer, scheduler, run = _setup(tmp_path, **{"optim.max_nonfinite_steps": 2, "optim.lr": 0.5})
    guard = run.guard
    for step, loss in enumerate([NAN, 1.0, NAN], start=1):
        _backward(model, tok)
        optimizer_step(run, loss)
        guard.end_step({})
        guard.check(step)
    assert guard.streak == 1
    _backward(model, tok)
    optimizer_step(run, math.inf)
    guard.end_step({})
    with pytest.raises(NonFiniteError) as caught:
        guard.check(4)
    text = str(caught.value)
    for words in ("step 4", "2 consecutive steps", "the loss is infinite", "optim.lr = 0.5", "model.dtype = float32",
                  "reward", "No checkpoint was written yet"):
        assert words in text, words
    assert guard.state() == {"nonfinite_streak": 2}
    fresh = _setup(tmp_path)[-1].guard
    fresh.load_state(guard.state())
    assert fresh.streak == 2


def test_max_nonfinite_steps_is_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"optim.max_nonfinite_steps: must be an integer >= 1, got 0"):
        validate_config(tiny_config(tmp_path, "optim.max_nonfinite_steps=0"))


# --------------------------------------------------------------------------- in the training loop


def _faulty_loss(monkeypatch, from_step: int, to_step: int = 10**9):
    """policy_loss returns NaN during steps from_step..to_step (counted by the reward calls, one per step)."""
    step = {"n": 0}

    def counting(completions, **columns):
        step["n"] += 1
        return digit_fraction(completions)

    real = step_module.policy_loss

    def loss(*args, **kwargs):
        value, metrics = real(*args, **kwargs)
        return (value * NAN if from_step <= step["n"] <= to_step else value), metrics

    monkeypatch.setattr(step_module, "policy_loss", loss)
    return {"digits": counting}


def _blob(checkpoint):
    return torch.load(checkpoint / "trainer_state.pt", weights_only=True)


def _same_checkpoint_state(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = _blob(a)["optimizer"]["state"], _blob(b)["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k][f], sb[k][f]) for k in sa for f in sa[k])


def test_a_nan_loss_skips_the_update_in_training(tmp_path, monkeypatch):
    rewards = _faulty_loss(monkeypatch, from_step=2, to_step=2)
    config = tiny_config(tmp_path, "steps=3", "checkpoint.every=1", "checkpoint.keep_last=5")
    result = train(config, reward_functions=rewards)
    records = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    updates = config.algorithm.epochs * config.algorithm.mini_batches  # every update of step 2 has a NaN loss
    assert updates > 1
    assert [r["skipped_nonfinite"] for r in records] == [0, updates, 0]
    assert records[1]["nonfinite_reason"] == "the loss is NaN" and records[1]["loss"] is None
    assert "nonfinite_reason" not in records[0]
    one, two, three = list_checkpoints(result.run_dir)
    _same_checkpoint_state(one, two)  # the faulty step left weights and optimizer state as they were
    with pytest.raises(AssertionError):
        _same_checkpoint_state(two, three)  # and training went on at step 3
    assert json.loads((two / "trainer_state.json").read_text())["nonfinite_streak"] == 1


def _capture_model(monkeypatch) -> dict:
    """{"model": the model ``train`` builds} once it is built (taken where the optimizer is made)."""
    captured = {}
    real_build = loop_module.build_optimizer

    def build(model, cfg):
        captured["model"] = model
        return real_build(model, cfg)

    monkeypatch.setattr(loop_module, "build_optimizer", build)
    return captured


def test_a_nan_in_one_gradient_skips_the_update_in_training(tmp_path, monkeypatch):
    captured = _capture_model(monkeypatch)
    calls = {"n": 0, "hook": None}

    def reward(completions, **columns):
        calls["n"] += 1
        if calls["n"] == 2:  # step 2: one parameter's gradient turns NaN
            param = dict(captured["model"].named_parameters())["model.layers.1.self_attn.q_proj.weight"]
            calls["hook"] = param.register_hook(lambda grad: torch.full_like(grad, NAN))
        elif calls["hook"] is not None:
            calls["hook"].remove()
            calls["hook"] = None
        return digit_fraction(completions)

    config = tiny_config(tmp_path, "steps=3", "checkpoint.every=1", "checkpoint.keep_last=5")
    result = train(config, reward_functions={"digits": reward})
    records = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    updates = config.algorithm.epochs * config.algorithm.mini_batches  # every update of step 2 has a NaN loss
    assert updates > 1
    assert [r["skipped_nonfinite"] for r in records] == [0, updates, 0]
    assert records[1]["nonfinite_reason"] == "the gradient of model.layers.1.self_attn.q_proj.weight is NaN"
    assert records[1]["grad_norm"] is None and isinstance(records[1]["loss"], float)
    one, two, _ = list_checkpoints(result.run_dir)
    _same_checkpoint_state(one, two)


def test_a_nan_reward_is_refused_naming_the_function_and_the_row(tmp_path, monkeypatch):
    captured = _capture_model(monkeypatch)
    calls = {"n": 0}

    def reward(completions, **columns):
        calls["n"] += 1
        scores = digit_fraction(completions)
        if calls["n"] == 2:
            scores[5] = NAN
        return scores

    config = tiny_config(tmp_path, "steps=3", "checkpoint.every=1")
    with pytest.raises(ValueError) as caught:
        train(config, reward_functions={"flaky": reward})
    text = str(caught.value)
    assert "reward 'flaky' returned nan for completion 5 (data.train example " in text
    assert "sample 2 of 4" in text and "rewards must be finite" in text
    run_dir = tmp_path / "run"
    assert latest_checkpoint(run_dir).name == "step-000001"  # the run stopped before anything of step 2 was kept
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1]
    saved, _ = tiny_model(seed=1)
    load_model_weights(saved, latest_checkpoint(run_dir))
    for (name, a), b in zip(captured["model"].state_dict().items(), saved.state_dict().values()):
        assert torch.equal(a, b), name  # the weights in memory are still those of step 1


def test_three_bad_steps_stop_the_run_naming_step_cause_and_checkpoint(tmp_path, monkeypatch):
    rewards = _faulty_loss(monkeypatch, from_step=3)
    config = tiny_config(tmp_path, "steps=8", "checkpoint.every=2", "checkpoint.keep_last=5")
    with pytest.raises(NonFiniteError) as caught:
        train(config, reward_functions=rewards)
    text = str(caught.value)
    run_dir = tmp_path / "run"
    assert text.startswith("step 5: stopped after 3 consecutive steps")
    assert "optim.lr = 0.001" in text and f"{run_dir / 'checkpoints' / 'step-000004'}" in text
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    updates = config.algorithm.epochs * config.algorithm.mini_batches
    assert [r["skipped_nonfinite"] for r in records] == [0, 0, updates, updates, updates]  # the failing step too
    two, four = list_checkpoints(run_dir)
    _same_checkpoint_state(two, four)


def test_an_exploding_learning_rate_stops_with_a_clear_message(tmp_path, capsys):
    status = main(["train", "tiny_test.yaml", f"logging.output_dir={tmp_path}", "logging.run_name=run", "steps=4",
                   "eval.at_start=false", "eval.at_end=false", "optim.lr=1e39"])
    err = capsys.readouterr().err
    assert status == 1
    assert "step 2: sampling failed because the model's next-token probabilities are not finite" in err
    assert "optim.lr = 1e+39" in err and "Traceback" not in err

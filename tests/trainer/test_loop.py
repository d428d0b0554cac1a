"""The training loop on a tiny random model: every objective, learning, resume, accumulation, settings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from apmpo import LOSSES
from apmpo.trainer import step
from apmpo.trainer.checkpoint import latest_checkpoint
from apmpo.trainer.loop import train
from apmpo.trainer.tracking import read_jsonl

from .conftest import sevens, tiny_config


def digit_fraction(completions, **columns):
    """Fraction of digits: varies a lot between random completions, so every group has signal."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


REWARD = {"digits": digit_fraction}
TIMING = {"step_seconds", "rollout_seconds", "generation_seconds", "train_seconds", "tokens_per_s", "train_tokens_per_s",
          "gen_tokens_per_s", "peak_rss_gb", "seconds"}


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def _train_records(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_objective_trains(tmp_path, name):
    params = ["algorithm.params.p=0.5"] if name == "pmpo" else []
    config = tiny_config(tmp_path, f"algorithm.name={name}", "steps=2", "logging.sample_every=1", *params)
    from apmpo.models import tiny_model

    initial = tiny_model(seed=0)[0].state_dict()
    result = train(config, reward_functions=REWARD)
    assert result.steps == 2 and len(result.history) == 2
    for metrics in result.history:
        assert metrics["trained_rows"] > 0
        for key in ("reward_mean", "accuracy", "p", "eps_high", "clip_frac_low", "clip_frac_high", "entropy", "grad_norm", "loss"):
            assert isinstance(metrics[key], float) and metrics[key] == metrics[key], key
    final = _weights(result.run_dir)
    changed = [k for k in final if not torch.equal(final[k], initial[k])]
    assert changed, "no parameter moved"
    samples = read_jsonl(result.run_dir / "samples.jsonl")
    assert samples and {"prompt", "completion", "reward", "advantage", "answer"} <= set(samples[0])


def test_reward_rises_on_a_trivial_reward(tmp_path):
    config = tiny_config(tmp_path, "steps=24", "optim.lr=3e-3", "rollout.prompts_per_step=4", "rollout.group_size=8",
                         "rollout.max_new_tokens=8", "logging.sample_every=0", "checkpoint.save_final=false")
    result = train(config, reward_functions={"sevens": sevens})
    rewards = [m["reward_mean"] for m in result.history]
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.2, rewards
    # APMPO's controllers follow the reward: p = exp(-0.8 mu_R) falls as the reward rises
    assert result.history[-1]["p"] < result.history[0]["p"]


def test_resume_matches_an_uninterrupted_run(tmp_path):
    settings = ["steps=5", "checkpoint.every=2", "checkpoint.keep_last=3", "optim.lr_schedule=cosine",
                "optim.warmup_steps=2", "algorithm.mini_batches=2", "algorithm.epochs=2", "algorithm.beta=0.01",
                "logging.sample_every=1", "rollout.engine=fast"]
    straight = train(tiny_config(tmp_path / "a", *settings), reward_functions=REWARD)

    calls = {"n": 0}

    def interrupted(completions, **columns):
        calls["n"] += 1
        if calls["n"] == 4:  # during step 4, after the step-2 checkpoint (and step 3)
            raise KeyboardInterrupt
        return digit_fraction(completions)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "b", *settings), reward_functions={"digits": interrupted})
    run_b = tmp_path / "b" / "run"
    assert latest_checkpoint(run_b).name == "step-000002"
    resumed = train(tiny_config(tmp_path / "b", *settings), resume=True, reward_functions=REWARD)
    assert resumed.steps == 5

    a, b = _train_records(straight.run_dir), _train_records(run_b)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]  # the interrupted step 3 was replaced, not duplicated
    assert a == b
    wa, wb = _weights(straight.run_dir), _weights(run_b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    state = json.loads((latest_checkpoint(run_b) / "trainer_state.json").read_text())
    assert [h["step"] for h in state["controller_history"]] == [1, 2, 3, 4, 5]
    assert read_jsonl(run_b / "samples.jsonl") == read_jsonl(straight.run_dir / "samples.jsonl")
    # the fast engine sampled: only running rows were decoded, and the checkpoint says which engine sampled
    assert all(r["decode_slot_use"] == 1.0 and r["row_steps"] == r["generated_tokens"] for r in a)
    assert state["sampling_engine"] == "fast"


def test_resume_with_another_engine_is_refused(tmp_path):
    """The engines draw different completions from the same RNG state: a resumed run must keep the one that sampled."""
    settings = ["steps=1", "checkpoint.every=1", "rollout.prompts_per_step=2", "rollout.group_size=2"]
    first = train(tiny_config(tmp_path, *settings), reward_functions=REWARD)
    with pytest.raises(ValueError, match=r"sampled with rollout.engine=fast, this run would sample with hf"):
        train(tiny_config(tmp_path, *settings, "steps=2", "rollout.engine=hf"), resume=True, reward_functions=REWARD)
    state_file = latest_checkpoint(first.run_dir) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["sampling_engine"]  # a checkpoint written before the fast engine: generate sampled
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"rollout.engine=hf, this run would sample with fast"):
        train(tiny_config(tmp_path, *settings, "steps=2"), resume=True, reward_functions=REWARD)
    resumed = train(tiny_config(tmp_path, *settings, "steps=2", "rollout.engine=hf"), resume=True,
                    reward_functions=REWARD)
    assert resumed.steps == 2 and resumed.history[-1]["decode_slot_use"] <= 1.0


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_seeded_runs_are_reproducible(tmp_path, engine):
    settings = ["steps=2", "rollout.prompts_per_step=2", "rollout.group_size=4", f"rollout.engine={engine}",
                "logging.sample_every=1"]
    runs = [train(tiny_config(tmp_path / f"{seed}-{k}", *settings, f"seed={seed}"), reward_functions=REWARD)
            for seed, k in ((0, 0), (0, 1), (1, 0))]
    same, again, other = runs
    assert _train_records(same.run_dir) == _train_records(again.run_dir)
    assert read_jsonl(same.run_dir / "samples.jsonl") == read_jsonl(again.run_dir / "samples.jsonl")
    wa, wb = _weights(same.run_dir), _weights(again.run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_jsonl(same.run_dir / "samples.jsonl") != read_jsonl(other.run_dir / "samples.jsonl")  # the seed matters


@pytest.mark.parametrize("name, beta", [("apmpo", 0.05), ("dapo", 0.0)])
def test_gradient_accumulation_equals_the_full_batch(tmp_path, name, beta):
    # adam_eps far above |g| makes AdamW's first update lr * g / adam_eps: the weights move by the gradient itself
    common = [f"algorithm.name={name}", f"algorithm.beta={beta}", "steps=1", "rollout.prompts_per_step=3",
              "rollout.group_size=4", "optim.max_grad_norm=0", "optim.lr=1e4", "optim.adam_eps=1e4",
              "optim.logprob_chunk_size=5"]
    full = train(tiny_config(tmp_path / "full", *common, "optim.micro_batch_size=12"), reward_functions=REWARD)
    micro = train(tiny_config(tmp_path / "micro", *common, "optim.micro_batch_size=1"), reward_functions=REWARD)
    assert full.history[0]["trained_rows"] > 1
    assert abs(full.history[0]["grad_norm"] - micro.history[0]["grad_norm"]) < 1e-5 * full.history[0]["grad_norm"]
    wf, wm = _weights(full.run_dir), _weights(micro.run_dir)
    for k in wf:
        torch.testing.assert_close(wf[k], wm[k], rtol=1e-5, atol=1e-6, msg=k)


def test_the_lean_layers_train_like_the_models_own(tmp_path, monkeypatch):
    """model.lean_layers (default on) is installed on the trained model and gives the same update as the model's own
    forward/backward (up to float rounding); off, the model keeps its own forward."""
    from apmpo.models import lean_layer_count

    installed: list[int] = []
    original = step.optimizer_step

    def spy(run, *args, **kwargs):
        installed.append(lean_layer_count(run.model))
        return original(run, *args, **kwargs)

    monkeypatch.setattr(step, "optimizer_step", spy)
    common = ["steps=1", "rollout.prompts_per_step=3", "rollout.group_size=4", "optim.max_grad_norm=0",
              "optim.lr=1e4", "optim.adam_eps=1e4"]
    lean = train(tiny_config(tmp_path / "lean", *common), reward_functions=REWARD)
    own = train(tiny_config(tmp_path / "own", *common, "model.lean_layers=false"), reward_functions=REWARD)
    layers = 2  # the tiny model: 2 decoder layers, each with an MLP and 2 norms, plus the final norm
    assert set(installed[:len(installed) // 2]) == {3 * layers + 1} and set(installed[len(installed) // 2:]) == {0}
    assert lean.history[0]["trained_rows"] > 1
    assert abs(lean.history[0]["grad_norm"] - own.history[0]["grad_norm"]) < 1e-5 * own.history[0]["grad_norm"]
    wl, wo = _weights(lean.run_dir), _weights(own.run_dir)
    for k in wl:
        torch.testing.assert_close(wl[k], wo[k], rtol=1e-5, atol=1e-6, msg=k)


def test_skipping_zero_advantage_rows_is_exact(tmp_path):
    def half(completions, **columns):  # one group with signal, one group all zero
        return [digit_fraction([c])[0] if i < 4 else 0.0 for i, c in enumerate(completions)]

    common = ["steps=1", "rollout.prompts_per_step=2", "rollout.group_size=4", "optim.lr=1e4", "optim.adam_eps=1e4",
              "optim.max_grad_norm=0"]
    skip = train(tiny_config(tmp_path / "s", *common), reward_functions={"r": half})
    full = train(tiny_config(tmp_path / "f", *common, "optim.skip_zero_advantage=false"), reward_functions={"r": half})
    assert skip.history[0]["trained_rows"] == 4 and full.history[0]["trained_rows"] == 8
    ws, wf = _weights(skip.run_dir), _weights(full.run_dir)
    for k in ws:
        torch.testing.assert_close(ws[k], wf[k], rtol=1e-6, atol=1e-7, msg=k)


def test_dynamic_sampling_and_truncation_masking(tmp_path):
    def all_zero(completions, **columns):
        return [0.0] * len(completions)

    result = train(tiny_config(tmp_path / "z", "steps=2", "algorithm.name=dapo", "algorithm.dynamic_sampling=true",
                               "algorithm.max_sampling_rounds=2", "optim.lr_schedule=linear", "optim.min_lr_ratio=0.0"),
                   reward_functions={"zero": all_zero})
    assert [m["groups_kept"] for m in result.history] == [0, 0]
    lrs = [m["lr"] for m in result.history]  # no update, but the schedule follows the steps: 0 after the last
    assert lrs[0] > lrs[1] and lrs[1] == pytest.approx(0.0, abs=1e-12)
    assert [m["sampling_rounds"] for m in result.history] == [2, 2]
    assert result.history[-1]["prompts_consumed"] == 8  # 2 steps x 2 rounds x 2 prompts

    result = train(tiny_config(tmp_path / "d", "steps=2", "algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=3"),
                   reward_functions=REWARD)
    assert all(m["groups_kept"] == 2 and m["adv_zero_frac"] == 0.0 for m in result.history)

    def first_group_only(completions, **columns):  # the second group of each round is all zero
        return [digit_fraction([c])[0] if i < 4 else 0.0 for i, c in enumerate(completions)]

    result = train(tiny_config(tmp_path / "s", "steps=2", "algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=1",
                               "algorithm.mini_batches=2", "rollout.group_size=4"),
                   reward_functions={"first": first_group_only})
    for m in result.history:  # a short batch of one group, split into two mini-batches, every row with signal trained
        assert m["groups_kept"] == 1 and m["trained_rows"] == round(4 * (1 - m["adv_zero_frac"])) > 0

    result = train(tiny_config(tmp_path / "t", "steps=1", "algorithm.mask_truncated=true", "rollout.max_new_tokens=2"),
                   reward_functions=REWARD)
    assert result.history[0]["truncated_frac"] == 1.0 and result.history[0]["trained_rows"] == 0
    assert result.history[0]["train_tokens"] == 0 and result.history[0]["grad_norm"] == 0.0


def test_overlong_penalty_is_added(tmp_path):
    result = train(tiny_config(tmp_path, "steps=1", "algorithm.name=grpo", "rollout.max_new_tokens=4",
                               "algorithm.overlong_buffer=2", "algorithm.overlong_penalty=0.5"),
                   reward_functions=REWARD)
    m = result.history[0]
    assert m["reward/overlong_penalty"] < 0
    assert abs(m["reward_mean"] - (m["reward/digits"] + 0.5 * m["reward/overlong_penalty"])) < 1e-6


def test_per_prompt_apmpo_gets_per_group_statistics(tmp_path, monkeypatch):
    """apmpo_group: the same first rollout as apmpo (same seed), the same mean of mu_R, but each response's p from its
    own group's mean, so p differs from the batch scope's exp(-gamma * mu_R). The scope comes from
    LossSpec.reward_stats_scope: every loss call gets [n] per-row statistics, each one of its step's group means."""
    batch = train(tiny_config(tmp_path / "b", "steps=1"), reward_functions=REWARD).history[0]
    original_loss, original_stats, seen, stats = step.policy_loss, step.reward_statistics, [], []

    def loss_spy(name, *args, **hp):
        seen.append((name, hp["reward_mean"], hp["reward_std"]))
        return original_loss(name, *args, **hp)

    def stats_spy(rewards, group_size=None, scope="batch", **kw):
        stats.append((scope, *original_stats(rewards, group_size, scope, **kw)))
        return stats[-1][1:]

    monkeypatch.setattr(step, "policy_loss", loss_spy)
    monkeypatch.setattr(step, "reward_statistics", stats_spy)
    history = train(tiny_config(tmp_path / "g", "steps=2", "algorithm.name=apmpo_group"), reward_functions=REWARD).history
    group = history[0]
    assert group["accuracy"] == batch["accuracy"] and group["mu_r"] == pytest.approx(batch["mu_r"], rel=1e-6)
    assert batch["p"] == pytest.approx(math.exp(-0.8 * batch["mu_r"]), rel=1e-6)
    assert abs(group["p"] - batch["p"]) > 1e-6 and 0 < group["p"] <= 1
    assert [s[0] for s in stats] == ["group", "group"] and all(s[1].shape == (8,) for s in stats)
    assert seen and all(n == "apmpo_group" and m.dim() == 1 and s.shape == m.shape for n, m, s in seen)
    group_means = {round(float(v), 6) for s in stats for v in s[1]}
    assert {round(float(v), 6) for _, m, _ in seen for v in m} <= group_means


@pytest.mark.parametrize("name", ["apmpo", "apmpo_group"])
def test_controllers_are_logged_when_no_response_trains(tmp_path, name):
    """Every reward 0.5: every advantage is 0 and no row trains (beta = 0); p and eps_ada still come from the registry
    (per-row controllers by their mean): p = exp(-0.8 * 0.5), FSS = 0.5 / 1e-6, eps_ada = eps_max = 0.4."""

    def half(completions, **columns):
        return [0.5] * len(completions)

    m = train(tiny_config(tmp_path, "steps=1", "algorithm.beta=0", f"algorithm.name={name}"),
              reward_functions={"r": half}).history[0]
    assert m["trained_rows"] == 0
    assert m["p"] == pytest.approx(math.exp(-0.4), rel=1e-6) and m["eps_high"] == pytest.approx(0.4, rel=1e-6)


def test_rewards_outside_the_declared_range_stop_the_run(tmp_path):
    def big(completions, **columns):
        return [1.5 + x for x in digit_fraction(completions)]

    with pytest.raises(ValueError, match=r"step 1: rewards: values in \[1.5, 1\.\d+\] outside the reward range \[0, 1\].*as algorithm.reward_range.*reward_range=\[-1,1\]"):
        train(tiny_config(tmp_path / "a", "steps=1"), reward_functions={"big": big})
    result = train(tiny_config(tmp_path / "b", "steps=1", "algorithm.reward_range=[0, 3]"), reward_functions={"big": big})
    assert result.history[0]["trained_rows"] > 0


def test_run_directory_errors(tmp_path):
    config = tiny_config(tmp_path, "steps=1")
    with pytest.raises(ValueError, match="no complete checkpoint to resume from"):
        train(config, resume=True, reward_functions=REWARD)
    train(config, reward_functions=REWARD)
    with pytest.raises(ValueError, match="already exists; use --resume"):
        train(config, reward_functions=REWARD)


def test_bad_data_row_is_reported_with_file_and_line(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2"}\n')
    config = tiny_config(tmp_path, "steps=1", f"data.train={data}", "data.eval=null", "reward.functions={digits: 1}")
    with pytest.raises(ValueError, match=rf"{data}.*line 2.*answer"):
        train(config, reward_functions=REWARD)
    config = tiny_config(tmp_path, "steps=1", f"data.train={data}", "data.eval=null", "data.on_bad_row=skip",
                         "reward.functions={digits: 1}", "logging.run_name=skip")
    assert train(config, reward_functions=REWARD).steps == 1


def test_lora_reference_by_disabling_the_adapter(tmp_path):
    pytest.importorskip("peft")
    result = train(tiny_config(tmp_path, "steps=2", "algorithm.beta=0.1", "model.lora={r: 4, alpha: 8, dropout: 0.0}"),
                   reward_functions=REWARD)
    assert result.history[-1]["kl"] >= 0
    assert (latest_checkpoint(result.run_dir) / "adapter_model.safetensors").is_file()
    # the fast engine does not decode LoRA layers: generate samples, said once before the first step
    warnings = [r["message"] for r in read_jsonl(result.run_dir / "metrics.jsonl") if r["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("rollout.engine=fast cannot decode this model (")
    assert "lora" in warnings[0].lower() and "set rollout.engine=hf" in warnings[0]
    assert json.loads((latest_checkpoint(result.run_dir) / "trainer_state.json").read_text())["sampling_engine"] == "hf"


def test_a_single_update_makes_apmpo_grpo_and_more_updates_do_not(tmp_path):
    """Why the shipped configs use mini_batches > 1: with one update per rollout batch every ratio is 1
    and APMPO's gradient is GRPO's; from the second update on, the power mean and FAC act."""
    runs = {}
    for name in ("apmpo", "grpo"):
        for mini in (1, 2):
            # adam_eps far above |g|: each AdamW update is lr * g / adam_eps, so weights reflect the gradients
            result = train(tiny_config(tmp_path / f"{name}{mini}", f"algorithm.name={name}", "steps=1", "optim.lr=1e4",
                                       "optim.adam_eps=1e4", "optim.max_grad_norm=0", f"algorithm.mini_batches={mini}",
                                       "rollout.prompts_per_step=4"),
                           reward_functions=REWARD)
            runs[name, mini] = _weights(result.run_dir)
    for k in runs["apmpo", 1]:
        torch.testing.assert_close(runs["apmpo", 1][k], runs["grpo", 1][k], rtol=1e-5, atol=1e-7, msg=k)
    gap = max(float((runs["apmpo", 2][k] - runs["grpo", 2][k]).abs().max()) for k in runs["apmpo", 2])
    assert gap > 1e-3


@pytest.mark.parametrize("settings", [["model.gradient_checkpointing=true"],
                                      ["model.dtype=bfloat16", "algorithm.beta=0.01", "algorithm.epochs=2"]])
def test_model_settings(tmp_path, settings):
    result = train(tiny_config(tmp_path, "steps=2", *settings), reward_functions=REWARD)
    for m in result.history:
        assert m["trained_rows"] > 0 and 0 < m["grad_norm"] < float("inf")
        assert m.get("kl", 0.0) >= 0


@pytest.mark.parametrize("micro", [4, 3])
def test_shared_prompt_pass_gives_the_same_update(tmp_path, micro):
    """optim.share_prompt_forward runs each prompt once per micro-batch: same gradient, fewer body tokens."""
    common = ["steps=1", "rollout.prompts_per_step=3", "rollout.group_size=4", "optim.max_grad_norm=0",
              "optim.lr=1e4", "optim.adam_eps=1e4", f"optim.micro_batch_size={micro}", "optim.skip_zero_advantage=false"]
    shared = train(tiny_config(tmp_path / "s", *common), reward_functions=REWARD)
    plain = train(tiny_config(tmp_path / "p", *common, "optim.share_prompt_forward=false"), reward_functions=REWARD)
    assert shared.history[0]["forward_tokens"] < plain.history[0]["forward_tokens"]
    assert abs(shared.history[0]["grad_norm"] - plain.history[0]["grad_norm"]) < 1e-5 * plain.history[0]["grad_norm"]
    ws, wp = _weights(shared.run_dir), _weights(plain.run_dir)
    for k in ws:
        torch.testing.assert_close(ws[k], wp[k], rtol=1e-5, atol=1e-6, msg=k)


def _rollout(prompt_lengths, completion_lengths, group_size):
    from apmpo.sampling.rollout import Rollout

    N, P, T = len(completion_lengths), max(prompt_lengths), max(completion_lengths)
    prompt_mask = torch.arange(P).flip(0)[None, :] < torch.tensor(prompt_lengths)[:, None]    # left padding
    completion_mask = torch.arange(T)[None, :] < torch.tensor(completion_lengths)[:, None]
    return Rollout(torch.ones(N, P, dtype=torch.long), prompt_mask.long(), torch.ones(N, T, dtype=torch.long),
                   completion_mask, torch.zeros(N, dtype=torch.bool), [""] * N, torch.arange(N) // group_size)


def test_micro_batch_plans_pick_the_cheapest_order():
    from apmpo.trainer.step import micro_batches, plan_micro_batches

    # short prompts, long-tailed completions: length order (least padding) beats grouping
    ro = _rollout([2] * 8, [1, 5, 2, 3, 7, 1, 1, 2], group_size=4)
    rows = torch.arange(8)
    assert [c.tolist() for c in plan_micro_batches(ro, rows, 4)] == [[4, 1, 3, 2], [7, 0, 5, 6]]
    assert [c.tolist() for c in plan_micro_batches(ro, rows, 4, share_prompts=True)] == [[4, 1, 3, 2], [7, 0, 5, 6]]
    # long shared prompts, short completions: whole groups per micro-batch (one prompt pass each)
    ro = _rollout([40] * 4 + [30] * 4, [10, 1, 1, 1, 20, 1, 1, 1], group_size=4)
    assert [c.tolist() for c in plan_micro_batches(ro, rows, 4)] == [[0, 4, 1, 2], [3, 5, 6, 7]]  # cost 244
    assert [c.tolist() for c in plan_micro_batches(ro, rows, 4, share_prompts=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # 190
    # each micro-batch is trimmed to its own longest prompt and completion
    assert [tuple(mb.completion_ids.shape) for _, mb in micro_batches(ro, rows, 4, share_prompts=True)] == [(4, 10), (4, 20)]
    assert [mb.prompt_ids.shape[1] for _, mb in micro_batches(ro, rows, 4, share_prompts=True)] == [40, 30]
    assert plan_micro_batches(ro, rows[:0], 4, share_prompts=True) == []

"""APMPOTrainer on the real TRL GRPOTrainer, on CPU, with a tiny random Llama and a character tokenizer.

Skips (with the install command) when TRL is not installed.
"""

from __future__ import annotations

import math

import pytest
import torch

import apmpo

pytest.importorskip("trl", reason="TRL is not installed; to run: pip install 'apmpo[trl]' (trl==1.16.0)")
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402
from trl.trainer.utils import split_tensor_dict  # noqa: E402

import apmpo.integrations.trl as at  # noqa: E402  (a plug-in that fails to import is a failure, not a skip)
from apmpo.models import tiny_model  # noqa: E402

pytestmark = pytest.mark.integration

PROMPTS = ["1+1=", "2+3=", "4+4=", "9-3="]


def digit_fraction(completions, **_):
    """Reward in [0, 1]: the fraction of digits in the completion (varies a lot under a random model)."""
    return [sum(ch.isdigit() for ch in text) / max(len(text), 1) for text in completions]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random Llama + tokenizer saved like any checkpoint (TRL loads its reference model by path)."""
    path = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny_model(seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _config(tmp_path, **overrides):
    fields = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=1e-2, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
        gradient_accumulation_steps=2, seed=0, bf16=False,
        allow_single_update=True,  # these tests are about the loss; the schedule warning has its own tests below
    )
    fields.update(overrides)
    return at.APMPOConfig(**fields)


def _trainer(model_dir, tmp_path, **overrides):
    dataset = Dataset.from_dict({"prompt": PROMPTS * 2})
    return at.APMPOTrainer(
        model=model_dir, reward_funcs=digit_fraction, args=_config(tmp_path, **overrides), train_dataset=dataset
    )


def _scored_batch(trainer):
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)


def _core_loss(trainer, inputs, normalizer, **extra):
    """The same loss from the core: TRL's own log-prob function, then apmpo.policy_loss + beta * kl_penalty."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    log_probs, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, attention, inputs["completion_ids"].size(1)
    )
    mask = inputs["completion_mask"]
    hp = {"reward_mean": inputs[at.REWARD_MEAN_KEY], "reward_std": inputs[at.REWARD_STD_KEY]}
    advantages = extra.pop("advantages", inputs["advantages"])
    loss, _ = apmpo.policy_loss("apmpo", log_probs, log_probs.detach(), advantages, mask, normalizer=normalizer, **hp)
    kl, _ = apmpo.kl_penalty(log_probs, inputs["ref_per_token_logps"], mask, "k3", "response", normalizer)
    return loss + trainer.args.beta * kl


def _param_grad(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def test_two_training_steps_log_the_adaptive_quantities_and_move_the_weights(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logs = [h for h in trainer.state.log_history if "apmpo/p" in h]
    assert len(logs) == 2
    for log in logs:
        assert log["apmpo/reward_mean"] == pytest.approx(log["reward"], abs=1e-6)
        assert log["apmpo/p"] == pytest.approx(math.exp(-0.8 * log["apmpo/reward_mean"]), rel=1e-5)
        fss = log["apmpo/reward_mean"] / (log["apmpo/reward_std"] + 1e-6)
        assert log["apmpo/fss"] == pytest.approx(fss, rel=1e-4)
        assert log["apmpo/eps_high"] == pytest.approx(0.2 + 0.2 * math.tanh(fss), rel=1e-5)
        assert {"entropy", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean"} <= set(log)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_loss_equals_the_core_and_micro_batches_add_up(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path)
    inputs = _scored_batch(trainer)                                    # 8 completions = 2 micro-batches of 4
    texts = trainer.processing_class.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
    mean, std = apmpo.reward_statistics(torch.tensor(digit_fraction(texts)))
    assert float(inputs[at.REWARD_MEAN_KEY]) == pytest.approx(float(mean), abs=1e-6)
    assert float(inputs[at.REWARD_STD_KEY]) == pytest.approx(float(std), abs=1e-6)
    assert inputs[at.REWARD_MEAN_KEY].dim() == 0

    trainer.current_gradient_accumulation_steps = 1                    # whole batch in one step
    full = trainer._compute_loss(trainer.model, inputs)
    expected = _core_loss(trainer, inputs, normalizer=8)
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-7)
    full_grad = _param_grad(full, trainer.model)
    expected_grad = _param_grad(_core_loss(trainer, inputs, 8), trainer.model)
    torch.testing.assert_close(full_grad, expected_grad, rtol=1e-4, atol=1e-7)
    assert full_grad.abs().sum() > 0

    trainer.current_gradient_accumulation_steps = 2                    # TRL's split: 0-d statistics pass through
    halves = split_tensor_dict(inputs, 2)
    assert all(h[at.REWARD_MEAN_KEY] is inputs[at.REWARD_MEAN_KEY] for h in halves)
    accumulated = sum(_param_grad(trainer._compute_loss(trainer.model, h), trainer.model) for h in halves)
    torch.testing.assert_close(accumulated, full_grad, rtol=1e-4, atol=1e-6)


def test_sequence_level_importance_weights_scale_the_advantages(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path)
    inputs = _scored_batch(trainer)
    weights = torch.linspace(0.0, 2.0, 8)[:, None]                     # TRL's (B, 1) sequence-level ratio
    inputs["importance_sampling_ratio"] = weights
    trainer.use_vllm = trainer.vllm_importance_sampling_correction = True
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer._compute_loss(trainer.model, inputs)
    expected = _core_loss(trainer, inputs, 8, advantages=inputs["advantages"] * weights[:, 0])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)


def test_group_scope_gives_each_completion_its_groups_statistics(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path, apmpo_loss="apmpo_group")
    inputs = _scored_batch(trainer)
    texts = trainer.processing_class.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
    mean, std = apmpo.reward_statistics(torch.tensor(digit_fraction(texts)), group_size=4, scope="group")
    torch.testing.assert_close(inputs[at.REWARD_MEAN_KEY], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(inputs[at.REWARD_STD_KEY], std, rtol=1e-5, atol=1e-6)
    trainer.current_gradient_accumulation_steps = 1
    assert torch.isfinite(trainer._compute_loss(trainer.model, inputs))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"loss_type": "grpo"}, "loss_type='grpo' selects a TRL loss"),
        ({"importance_sampling_level": "sequence"}, "apmpo_loss='gspo'"),
        ({"delta": 2.0}, "delta"),
        ({"epsilon_high": 0.28}, "epsilon_high is not used"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
        ({"off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold"),
        ({"entropy_coef": 0.01}, "entropy bonus"),
        ({"use_bias_correction_kl": True}, "use_bias_correction_kl"),
        ({"use_vllm": True, "vllm_importance_sampling_mode": "token_mask"}, "token-level IS weights"),
        ({"apmpo_loss": "ppo"}, "apmpo_loss: unknown loss 'ppo'"),
        ({"loss_kwargs": {"gama": 0.5}}, "loss_kwargs: apmpo has no hyperparameter.*gama"),
        ({"loss_kwargs": {"reward_mean": 0.5}}, "reward_mean are computed by the trainer"),
        ({"loss_kwargs": "{bad json"}, "loss_kwargs: not valid JSON"),
        ({"apmpo_loss": "gmpo", "epsilon": 0.3}, r"epsilon=0.3: gmpo has no eps_low.*clip_log_high, clip_log_low"),
        ({"reward_range": [1.0, 0.0]}, r"reward_range=\[1.0, 0.0\]: expected \[lo, hi\] with lo < hi"),
        ({"delta": 2.0}, r"delta=2.0: two-sided clipping"),
        ({"apmpo_loss": "pmpo"}, r"loss_kwargs: pmpo needs p \(e.g. loss_kwargs=\{'p': ...\}\)"),
    ],
)
def test_settings_the_objective_cannot_honour_are_refused(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **setting)


def test_config_defaults_follow_the_paper_and_trainer_needs_our_config(model_dir, tmp_path):
    config = _config(tmp_path, apmpo_loss="pmpo", loss_kwargs='{"p": 0.5}')
    assert (config.beta, config.gamma, config.eps_min, config.eps_max) == (0.001, 0.8, 0.2, 0.4)
    assert config.loss_kwargs == {"p": 0.5}
    with pytest.raises(TypeError, match="APMPOConfig"):
        grpo = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
        at.APMPOTrainer(model=model_dir, reward_funcs=digit_fraction, args=grpo)


def test_the_trl_example_trains_the_tiny_model(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "trl" / "train_apmpo_trl.py"
    spec = importlib.util.spec_from_file_location("train_apmpo_trl", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import warnings

    from apmpo.core import SingleUpdateWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleUpdateWarning)              # its defaults give 4 updates per batch
        trainer = module.main([
            "--model", "tiny", "--output", str(tmp_path), "--max-steps", "2", "--limit", "8", "--lr", "1e-3",
            "--num-generations", "4", "--per-device-batch", "4", "--grad-accum", "1", "--steps-per-generation", "2",
            "--max-completion-length", "6",
        ])
    logs = [h for h in trainer.state.log_history if "apmpo/p" in h]
    assert len(logs) == 2 and logs[0]["apmpo/reward_mean"] == logs[1]["apmpo/reward_mean"]  # one batch, 2 updates
    assert logs[0]["apmpo/p"] == pytest.approx(math.exp(-0.8 * logs[0]["apmpo/reward_mean"]), rel=1e-5)
    assert (tmp_path / "final" / "config.json").exists()
    with pytest.raises(SystemExit) as info:                               # a configuration mistake: exit 2
        module.main(["--model", "tiny", "--output", str(tmp_path / "bad"), "--loss", "ppo"])
    assert info.value.code == 2


def test_one_update_per_generation_batch_warns_at_construction(model_dir, tmp_path):
    from apmpo.core import SingleUpdateWarning

    expected = (r"apmpo runs one optimizer update per rollout batch \(num_iterations=1, steps_per_generation=2, "
                r"gradient_accumulation_steps=2\).*GRPO's.*steps_per_generation=8.*APMPOConfig\(allow_single_update=True\)")
    with pytest.warns(SingleUpdateWarning, match=expected):
        _trainer(model_dir, tmp_path, allow_single_update=False)


@pytest.mark.parametrize("overrides", [
    {"steps_per_generation": 4, "allow_single_update": False}, {"num_iterations": 2, "allow_single_update": False},
    {"allow_single_update": True},
    {"apmpo_loss": "grpo", "allow_single_update": False}, {"apmpo_loss": "dapo", "allow_single_update": False},
])
def test_no_warning_otherwise(model_dir, tmp_path, overrides):
    import warnings

    from apmpo.core import SingleUpdateWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleUpdateWarning)
        _trainer(model_dir, tmp_path, **overrides)


@pytest.mark.parametrize(("steps_per_generation", "num_iterations", "accumulation", "updates"), [
    (8, 1, 8, 1), (32, 1, 8, 4), (2, 2, 4, 1), (4, 2, 4, 2), (3, 1, 4, 2), (6, 1, 4, 2), (1, 1, 4, 1),
])
def test_updates_per_generation_batch(steps_per_generation, num_iterations, accumulation, updates):
    """(3, 1, 4): the second generation batch starts inside an optimizer step, so its rows feed 2 updates."""
    from types import SimpleNamespace

    args = SimpleNamespace(steps_per_generation=steps_per_generation, num_iterations=num_iterations,
                           gradient_accumulation_steps=accumulation)
    assert at.updates_per_generation(args) == updates

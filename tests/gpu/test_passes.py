"""The training passes on the device: shared-prompt vs plain pass in bf16 with SDPA, the activation-checkpointing
path, and generate's sampling distribution vs the training pass's log-probs.

bf16 results are compared with a float32 computation of the same weights: two bf16
computations must agree as closely as each agrees with float32 (the device's bf16
rounding, not a fixed guess, sets the tolerance).
"""

from __future__ import annotations

import copy

import pytest
import torch

from apmpo.sampling.rollout import completion_mask_from_eos, encode_prompts
from apmpo.trainer.logprobs import completion_log_probs

from .conftest import tiny_text_model

pytestmark = pytest.mark.gpu


def _grouped_batch(device: torch.device, vocab: int, seed: int = 2):
    """3 distinct prompts (one left-padded) repeated 3, 2 and 1 times, rows interleaved; ragged completions."""
    g = torch.Generator().manual_seed(seed)
    P, T = 24, 16
    distinct = torch.randint(7, vocab, (3, P), generator=g)
    distinct_mask = torch.ones(3, P, dtype=torch.long)
    distinct_mask[1, :5] = 0
    which = torch.tensor([0, 1, 0, 2, 1, 0])
    completion_ids = torch.randint(7, vocab, (len(which), T), generator=g)
    completion_mask = torch.ones(len(which), T, dtype=torch.long)
    completion_mask[1, 9:] = 0
    completion_mask[4, 2:] = 0
    completion_mask[5, 13:] = 0
    batch = (distinct[which], distinct_mask[which], completion_ids, completion_mask)
    return tuple(t.to(device) for t in batch)


def _pass(model, batch, weights, **kwargs):
    """(log-probs [B, T] float32, {name: grad float32}, body tokens) of sum(weights * log-probs)."""
    model.zero_grad(set_to_none=True)
    out = completion_log_probs(model, *batch, temperature=0.9, chunk_size=8, **kwargs)
    (out.log_probs * weights).sum().backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.log_probs.detach().float(), grads, out.body_tokens


def _rel(a: dict, b: dict) -> float:
    """Largest relative L2 difference over the parameters that carry a gradient."""
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp(min=1e-12)) for k in b if float(b[k].norm()) > 1e-6)


def _as_float32(model):
    return copy.deepcopy(model).float()


def test_shared_prompt_pass_matches_the_plain_pass_in_bf16_with_sdpa(device):
    model, tokenizer = tiny_text_model(device, torch.bfloat16)
    batch = _grouped_batch(device, len(tokenizer))
    mask = batch[3].bool()
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(7)).to(device) * batch[3]

    plain_lp, plain_g, plain_tokens = _pass(model, batch, weights, share_prompt=False)
    shared_lp, shared_g, shared_tokens = _pass(model, batch, weights, share_prompt=True)
    ref_lp, ref_g, _ = _pass(_as_float32(model), batch, weights, share_prompt=False)

    assert shared_tokens == 3 * 24 + 6 * 16 < plain_tokens == 6 * (24 + 16)   # each prompt ran once
    bf16_error = float((plain_lp - ref_lp)[mask].abs().max())
    assert 0 < bf16_error < 0.5                                               # bf16 really ran, and sanely
    assert float((shared_lp - plain_lp)[mask].abs().max()) <= max(2 * bf16_error, 1e-2)
    assert float((shared_lp - ref_lp)[mask].abs().max()) <= max(2 * bf16_error, 1e-2)
    grad_error = _rel(plain_g, ref_g)
    assert grad_error < 0.2
    assert _rel(shared_g, plain_g) <= max(2 * grad_error, 2e-2)
    assert _rel(shared_g, ref_g) <= max(2 * grad_error, 2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_activation_checkpointing_path_equals_the_plain_pass(device, dtype):
    model, tokenizer = tiny_text_model(device, dtype)
    batch = _grouped_batch(device, len(tokenizer), seed=3)
    mask = batch[3].bool()
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(8)).to(device) * batch[3]
    model.train()
    plain_lp, plain_g, _ = _pass(model, batch, weights, share_prompt=False)
    model.gradient_checkpointing_enable()
    ckpt_lp, ckpt_g, ckpt_tokens = _pass(model, batch, weights, share_prompt=True)  # no KV cache: the full pass
    assert ckpt_tokens == 6 * (24 + 16)
    if dtype == torch.float32:
        torch.testing.assert_close(ckpt_lp[mask], plain_lp[mask], rtol=0, atol=1e-5)
        assert _rel(ckpt_g, plain_g) < 1e-4
    else:  # the recomputed forward is the same bf16 computation
        model.gradient_checkpointing_disable()
        ref_lp, ref_g, _ = _pass(_as_float32(model), batch, weights, share_prompt=False)
        bf16_error = float((plain_lp - ref_lp)[mask].abs().max())
        assert float((ckpt_lp - plain_lp)[mask].abs().max()) <= max(bf16_error, 1e-3)
        assert _rel(ckpt_g, plain_g) <= max(_rel(plain_g, ref_g), 1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_generate_samples_from_the_distribution_the_training_pass_scores(device, dtype):
    """Log-probs of sampled tokens: generate's (KV cache, token by token) vs the training pass (one forward)."""
    model, tokenizer = tiny_text_model(device, dtype, seed=3)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
             for c in ["1+1=", "what is 12+30?", "hi", "7*8-3="]]
    batch = encode_prompts(tokenizer, texts, device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=24,
                             do_sample=True, temperature=0.7, top_k=0, top_p=1.0, output_logits=True,
                             return_dict_in_generate=True, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        completion = out.sequences[:, batch.input_ids.shape[1]:]
        mask, _ = completion_mask_from_eos(completion, [tokenizer.eos_token_id])
        logits = torch.stack(out.logits, 1).float() / 0.7                      # [B, T, V] raw logits / temperature
        sampled = torch.log_softmax(logits, -1).gather(2, completion[..., None])[..., 0]
        ours = completion_log_probs(model, batch.input_ids, batch.attention_mask, completion, mask,
                                    temperature=0.7).log_probs
    assert int(mask.sum()) > 20
    difference = (ours - sampled)[mask].abs()
    if dtype == torch.float32:
        assert float(difference.max()) < 2e-3
    else:  # bf16: token-by-token and one-pass rounding differ; the distributions must still agree
        assert float(difference.mean()) < 0.05 and float(difference.max()) < 0.5

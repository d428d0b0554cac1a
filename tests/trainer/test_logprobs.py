"""Chunked completion log-probs equal the naive full-logits computation (values, entropy, gradients)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from apmpo.models.forward import position_ids_from_mask
from apmpo.trainer.logprobs import completion_log_probs


def _model(tie: bool, seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg).to(dtype)


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    B, P, T = 4, 6, 7
    prompt_ids = torch.randint(0, 97, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[0, :3] = 0  # left padding
    prompt_mask[2, :1] = 0
    completion_ids = torch.randint(0, 97, (B, T), generator=g)
    completion_mask = torch.ones(B, T, dtype=torch.long)
    completion_mask[1, 4:] = 0  # ended early
    completion_mask[3, 1:] = 0
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def _naive(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0):
    """Full [B, L, V] logits, log_softmax, gather: the reference."""
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    P, T = prompt_ids.shape[1], completion_ids.shape[1]
    log_p = torch.log_softmax(logits[:, P - 1 : P - 1 + T] / temperature, -1)       # [B, T, V]
    token = log_p.gather(2, completion_ids[..., None])[..., 0] * completion_mask
    entropy = -(log_p.exp() * log_p).sum(-1) * completion_mask
    return token, entropy


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tie, chunk_size, recompute, temperature", [
    (True, 1, True, 1.0), (True, 3, True, 0.7), (False, 1000, True, 1.0), (False, 3, False, 0.7), (True, 4, False, 1.0),
])
def test_chunked_equals_naive(tie, chunk_size, recompute, temperature):
    model = _model(tie)
    batch = _batch()
    weights = torch.randn(batch[2].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    ref_lp, ref_ent = _naive(model, *batch, temperature=temperature)
    (ref_lp * weights).sum().backward()
    ref_grads = _grads(model)
    model.zero_grad()

    out = completion_log_probs(model, *batch, temperature=temperature, chunk_size=chunk_size,
                               with_entropy=True, recompute_logits=recompute)
    (out.log_probs * weights).sum().backward()
    grads = _grads(model)

    torch.testing.assert_close(out.log_probs, ref_lp, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.entropy, ref_ent, rtol=0, atol=1e-12)
    assert set(grads) == set(ref_grads)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)
    assert (out.log_probs[batch[3] == 0] == 0).all()


def test_general_head_path_equals_naive():
    """A head that is not a plain nn.Linear (e.g. wrapped by an adapter) takes the checkpointed path."""
    model = _model(tie=False)
    batch = _batch()
    ref_lp, ref_ent = _naive(model, *batch)
    ref_lp.sum().backward()
    ref_grads = _grads(model)
    model.zero_grad()

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    model.lm_head = Wrapped(model.lm_head)
    out = completion_log_probs(model, *batch, chunk_size=2, with_entropy=True)
    out.log_probs.sum().backward()
    torch.testing.assert_close(out.log_probs, ref_lp, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.entropy, ref_ent, rtol=0, atol=1e-12)
    grads = {n.replace("lm_head.inner", "lm_head"): g for n, g in _grads(model).items()}
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-10, atol=1e-12, msg=name)


def test_float32_model_gives_float32_and_matches():
    model = _model(tie=True, dtype=torch.float32)
    batch = _batch()
    with torch.no_grad():
        ref, _ = _naive(model, *batch)
        out = completion_log_probs(model, *batch, chunk_size=5)
    assert out.log_probs.dtype == torch.float32 and out.entropy is None
    torch.testing.assert_close(out.log_probs, ref, rtol=1e-5, atol=1e-5)


def test_matches_the_sampling_pass():
    """Positions follow the attention mask like generate: the training pass sees what sampling saw."""
    from apmpo.models import tiny_model
    from apmpo.sampling.rollout import completion_mask_from_eos, encode_prompts

    model, tok = tiny_model(seed=3)
    texts = [tok.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
             for c in ["1+1=", "what is 12+30?", "hi"]]
    batch = encode_prompts(tok, texts)
    with torch.no_grad():
        out = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=6,
                             do_sample=False, output_logits=True, return_dict_in_generate=True,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        completion = out.sequences[:, batch.input_ids.shape[1]:]
        mask, _ = completion_mask_from_eos(completion, [tok.eos_token_id])
        sampled = torch.log_softmax(torch.stack(out.logits, 1).float(), -1).gather(2, completion[..., None])[..., 0]
        ours = completion_log_probs(model, batch.input_ids, batch.attention_mask, completion, mask).log_probs
    torch.testing.assert_close(ours[mask], sampled[mask], rtol=1e-4, atol=1e-4)


def test_bad_inputs():
    model = _model(tie=True)
    p, pm, c, cm = _batch()
    with pytest.raises(ValueError, match="temperature"):
        completion_log_probs(model, p, pm, c, cm, temperature=0)
    with pytest.raises(ValueError, match="batch sizes differ"):
        completion_log_probs(model, p[:2], pm[:2], c, cm)
    with pytest.raises(ValueError, match="completion_mask"):
        completion_log_probs(model, p, pm, c, cm[:, :2])


def _grouped_batch(seed: int = 2):
    """3 distinct prompts (one left-padded) repeated 3, 2 and 1 times, rows interleaved; ragged completions."""
    g = torch.Generator().manual_seed(seed)
    P, T = 6, 7
    distinct = torch.randint(0, 97, (3, P), generator=g)
    distinct_mask = torch.ones(3, P, dtype=torch.long)
    distinct_mask[1, :2] = 0
    which = torch.tensor([0, 1, 0, 2, 1, 0])
    completion_ids = torch.randint(0, 97, (len(which), T), generator=g)
    completion_mask = torch.ones(len(which), T, dtype=torch.long)
    completion_mask[1, 3:] = 0
    completion_mask[4, 1:] = 0
    completion_mask[5, 5:] = 0
    return distinct[which], distinct_mask[which], completion_ids, completion_mask


@pytest.mark.parametrize("tie", [True, False])
def test_shared_prompt_pass_equals_naive(tie):
    from apmpo.trainer.logprobs import prompt_groups

    model = _model(tie)
    batch = _grouped_batch()
    first, inverse = prompt_groups(batch[0], batch[1])
    assert first.shape == (3,) and torch.equal(batch[0][first][inverse], batch[0])
    weights = torch.randn(batch[2].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))

    ref_lp, ref_ent = _naive(model, *batch, temperature=0.8)
    (ref_lp * weights).sum().backward()
    ref_grads = _grads(model)
    model.zero_grad()

    out = completion_log_probs(model, *batch, temperature=0.8, chunk_size=4, with_entropy=True, share_prompt=True)
    (out.log_probs * weights).sum().backward()
    grads = _grads(model)
    assert out.body_tokens == 3 * 6 + 6 * 7  # one pass per distinct prompt, then the completions
    torch.testing.assert_close(out.log_probs, ref_lp, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.entropy, ref_ent, rtol=0, atol=1e-12)
    # Llama's RMSNorm runs in float32 even in a float64 model and its backward casts the
    # incoming gradient to float32; the shared pass sums a prompt's gradient over its rows
    # before that cast, the full pass after it: float32-level differences (~3e-8 relative).
    assert set(grads) == set(ref_grads)
    for name in grads:
        scale = float(ref_grads[name].abs().max())
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=1e-6 * scale, msg=name)


def test_shared_prompt_pass_falls_back_where_it_does_not_apply():
    model = _model(tie=True)
    batch = _batch()  # four different prompts: nothing to share
    out = completion_log_probs(model, *batch, share_prompt=True)
    assert out.body_tokens == 4 * (6 + 7)
    model.gradient_checkpointing_enable()  # turns the KV cache off: the full pass runs
    model.train()
    out = completion_log_probs(model, *_grouped_batch(), share_prompt=True)
    assert out.body_tokens == 6 * (6 + 7)

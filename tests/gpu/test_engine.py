"""The fast sampling engine on the device: greedy equal to generate (fp32), bf16 greedy and log-probs against the
training pass, seeded reproducibility, only running rows decoded.

bf16 tolerances are set by bf16 rounding: a greedy token must be the argmax of a full
forward pass up to a few bf16 steps of the logits, and the engine's log-probs of the
sampled tokens must agree with the training pass's (one forward over prompt +
completion) as closely as two bf16 computations of the same distribution can.
"""

from __future__ import annotations

import pytest
import torch

from apmpo.sampling.engine import DecodeSpec, sample_completions
from apmpo.sampling.rollout import encode_prompts, generate_rollouts
from apmpo.sampling.settings import Sampling
from apmpo.trainer.logprobs import completion_log_probs

from .conftest import tiny_text_model

pytestmark = pytest.mark.gpu

CONTENTS = ["1+1=", "what is 12+30?", "hi", "a much longer prompt than the others, 7*8-3="]


def _prompts(tokenizer, device):
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
             for c in CONTENTS]
    return encode_prompts(tokenizer, texts, device=device)


def test_greedy_engine_equals_generate_in_float32(device):
    model, tokenizer = tiny_text_model(device, torch.float32, seed=3, initializer_range=0.3)
    batch = _prompts(tokenizer, device)
    fast, hf = (generate_rollouts(model, tokenizer, batch, Sampling(max_new_tokens=16, temperature=0, engine=e),
                                  num_samples=2) for e in ("fast", "hf"))
    assert fast.meta["engine"] == "fast" and hf.meta["engine"] == "hf"
    assert fast.completion_ids.device.type == device.type
    assert torch.equal(fast.completion_ids, hf.completion_ids) and fast.completions == hf.completions
    assert fast.meta["row_steps"] == fast.meta["generated_tokens"]  # finished rows left the decode batch


def test_bfloat16_greedy_is_the_argmax_and_sampled_log_probs_match_the_training_pass(device):
    model, tokenizer = tiny_text_model(device, torch.bfloat16, seed=3, initializer_range=0.3)
    batch = _prompts(tokenizer, device)
    greedy = generate_rollouts(model, tokenizer, batch, Sampling(max_new_tokens=12, temperature=0), num_samples=1)
    assert greedy.meta["engine"] == "fast"
    ids = torch.cat([greedy.prompt_ids, greedy.completion_ids], 1)
    mask = torch.cat([greedy.prompt_mask.long(), greedy.completion_mask.long()], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    logits = logits.float()[:, greedy.prompt_ids.shape[1] - 1 : -1]  # [N, T, V]
    chosen = logits.gather(-1, greedy.completion_ids[..., None])[..., 0]  # [N, T]
    gap = (logits.amax(-1) - chosen)[greedy.completion_mask]
    assert float(gap.max()) <= 0.1, gap  # a few bf16 steps at these logit sizes

    torch.manual_seed(0)
    sampled = generate_rollouts(model, tokenizer, batch, Sampling(max_new_tokens=12, temperature=0.7), num_samples=3)
    torch.manual_seed(0)
    again = generate_rollouts(model, tokenizer, batch, Sampling(max_new_tokens=12, temperature=0.7), num_samples=3)
    assert torch.equal(sampled.completion_ids, again.completion_ids)  # seeded: the same completions

    spec = DecodeSpec(Sampling(max_new_tokens=12, temperature=0.7), (tokenizer.eos_token_id,), tokenizer.pad_token_id)
    torch.manual_seed(1)
    engine = sample_completions(model, batch.input_ids, batch.attention_mask, spec, num_samples=3, with_log_probs=True)
    with torch.no_grad():
        training = completion_log_probs(model, batch.input_ids.repeat_interleave(3, 0),
                                        batch.attention_mask.repeat_interleave(3, 0), engine.completion_ids,
                                        engine.completion_mask, temperature=0.7).log_probs
    m = engine.completion_mask
    assert int(m.sum()) > 20 and engine.log_probs.dtype == torch.float32
    torch.testing.assert_close(engine.log_probs[m], training[m], atol=0.1, rtol=0.05)

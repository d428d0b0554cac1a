"""Batched sampling with either engine: group layout, EOS masks and truncation, clean sampling settings, row
selection, the engine choice and its fallback, the work counted in the rollout's meta."""

from __future__ import annotations

import pytest
import torch

from apmpo.models import tiny_model
from apmpo.sampling.rollout import (
    Rollout,
    completion_mask_from_eos,
    encode_prompts,
    engine_for,
    engine_message,
    generate_rollouts,
)
from apmpo.sampling.settings import ENGINES, Sampling


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=1)


def _prompts(tok, contents=("1+1=", "what is 12+30?", "hi")):
    texts = [tok.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
             for c in contents]
    return encode_prompts(tok, texts)


def test_mask_from_first_eos():
    ids = torch.tensor([[5, 6, 2, 2, 2], [5, 2, 7, 2, 0], [5, 6, 7, 8, 9]])
    mask, truncated = completion_mask_from_eos(ids, [2])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]
    mask, truncated = completion_mask_from_eos(ids, [7, 2])  # several EOS ids
    assert mask[2].tolist() == [1, 1, 1, 0, 0] and not truncated[2]


@pytest.mark.parametrize("engine", ENGINES)
def test_groups_masks_and_texts(tiny, engine):
    model, tok = tiny
    batch = _prompts(tok)
    torch.manual_seed(0)
    r = generate_rollouts(model, tok, batch, Sampling(max_new_tokens=7, engine=engine), num_samples=4, batch_size=5)
    assert r.meta["engine"] == engine
    assert len(r) == 12 and r.prompt_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for row in range(12):  # each row carries its own prompt, left-padded to the widest
        p = r.prompt_index[row]
        width = int(batch.attention_mask[p].sum())
        assert r.prompt_ids[row][r.prompt_mask[row].bool()].tolist() == batch.input_ids[p][batch.attention_mask[p].bool()].tolist()
        assert int(r.prompt_mask[row].sum()) == width
    lengths = r.completion_mask.sum(-1)
    for row in range(12):
        valid = r.completion_ids[row][: lengths[row]]
        ends_with_eos = int(valid[-1]) == tok.eos_token_id
        assert bool(r.truncated[row]) == (not ends_with_eos)
        if r.truncated[row]:
            assert lengths[row] == 7
        assert r.completions[row] == tok.decode(valid.tolist(), skip_special_tokens=True)
    assert r.meta["generated_tokens"] == int(lengths.sum())
    # row-steps: the fast engine computes only running rows; generate every row of its call until all have ended
    if engine == "fast":
        assert r.meta["row_steps"] == r.meta["generated_tokens"]
    else:
        calls = [(0, 4), (4, 8), (8, 12)]  # batch_size 5 with G = 4: one prompt (4 rows) per generate call
        assert r.meta["row_steps"] == sum(4 * int(lengths[a:b].max()) for a, b in calls)


@pytest.mark.parametrize("engine", ENGINES)
def test_sampling_is_seeded_and_greedy_is_deterministic(tiny, engine):
    model, tok = tiny
    batch = _prompts(tok)
    sampling = Sampling(max_new_tokens=6, engine=engine)
    torch.manual_seed(1)
    a = generate_rollouts(model, tok, batch, sampling, num_samples=3)
    torch.manual_seed(1)
    b = generate_rollouts(model, tok, batch, sampling, num_samples=3)
    assert torch.equal(a.completion_ids, b.completion_ids)
    torch.manual_seed(2)
    c = generate_rollouts(model, tok, batch, sampling, num_samples=3)
    assert not torch.equal(a.completion_ids, c.completion_ids)  # the seed matters
    greedy = Sampling(max_new_tokens=6, temperature=0, engine=engine)
    g1 = generate_rollouts(model, tok, batch, greedy, num_samples=2)
    assert torch.equal(g1.completion_ids[0::2], g1.completion_ids[1::2])  # greedy: identical samples


def test_greedy_completions_are_the_same_with_either_engine(tiny):
    model, tok = tiny
    batch = _prompts(tok, ("1+1=", "what is 12+30?", "hi", "a much longer prompt than the others"))
    fast, hf = (generate_rollouts(model, tok, batch, Sampling(max_new_tokens=10, temperature=0, engine=e),
                                  num_samples=2, batch_size=4) for e in ENGINES)
    assert torch.equal(fast.prompt_ids, hf.prompt_ids) and torch.equal(fast.prompt_mask, hf.prompt_mask)
    assert torch.equal(fast.completion_ids, hf.completion_ids) and fast.completions == hf.completions
    assert torch.equal(fast.completion_mask, hf.completion_mask) and torch.equal(fast.truncated, hf.truncated)
    # the fast engine computes a row only while it runs; generate computes every row of a call until all have ended
    assert fast.meta["row_steps"] == fast.meta["generated_tokens"]
    widths = [int(fast.completion_lengths[a : a + 4].max()) for a in (0, 4)]  # batch_size 4: two calls of 4 rows
    assert hf.meta["row_steps"] == 4 * sum(widths)


def test_a_model_the_engine_cannot_decode_is_sampled_with_generate(tiny):
    model, tok = tiny
    wrapped, _ = tiny_model(seed=1)
    wrapped.model.layers[0].mlp.down_proj = torch.nn.Sequential(wrapped.model.layers[0].mlp.down_proj)  # like LoRA
    sampling = Sampling(max_new_tokens=5)
    assert engine_for(model, sampling) == ("fast", None)
    assert engine_for(model, Sampling(engine="hf")) == ("hf", None)
    engine, reason = engine_for(wrapped, sampling)
    assert engine == "hf" and "layer 0 mlp.down_proj is a Sequential, not a plain nn.Linear" in reason
    assert engine_message(model, sampling) == ("sampling: the fast sampling engine (apmpo.sampling.engine)", False)
    assert engine_message(model, Sampling(engine="hf")) == ("sampling: transformers generate (rollout.engine=hf)", False)
    line, is_warning = engine_message(wrapped, sampling, setting="--engine")
    assert is_warning and line.startswith("--engine=fast cannot decode this model (") and reason in line
    assert "sampled with transformers generate instead" in line and "set --engine=hf" in line
    torch.manual_seed(3)
    r = generate_rollouts(wrapped, tok, _prompts(tok), sampling, num_samples=2)
    assert r.meta["engine"] == "hf" and len(r) == 6
    with pytest.raises(TypeError, match="sampling must be a Sampling"):
        generate_rollouts(model, tok, _prompts(tok), {"max_new_tokens": 4}, num_samples=2)


@pytest.mark.parametrize("temperature, batch_size", [(0.0, 0), (1.0, 6)])
def test_shared_prefill_gives_the_same_samples(tiny, temperature, batch_size):
    model, tok = tiny
    batch = _prompts(tok, ("1+1=", "what is 12+30?", "hi", "x"))
    sampling = Sampling(max_new_tokens=8, temperature=temperature, engine="hf")
    torch.manual_seed(4)
    plain = generate_rollouts(model, tok, batch, sampling, num_samples=3, batch_size=batch_size, share_prefill=False)
    torch.manual_seed(4)
    shared = generate_rollouts(model, tok, batch, sampling, num_samples=3, batch_size=batch_size, share_prefill=True)
    assert torch.equal(plain.prompt_ids, shared.prompt_ids) and torch.equal(plain.completion_ids, shared.completion_ids)


@pytest.mark.parametrize("engine", ENGINES)
def test_model_generation_defaults_do_not_leak(tiny, engine):
    """A model shipping e.g. a near-zero temperature must still be sampled at the configured one."""
    from transformers import GenerationConfig

    model, tok = tiny
    batch = _prompts(tok)
    saved = model.generation_config
    model.generation_config = GenerationConfig(temperature=1e-4, top_k=1, do_sample=True, repetition_penalty=5.0,
                                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    try:
        torch.manual_seed(0)
        r = generate_rollouts(model, tok, batch, Sampling(max_new_tokens=6, engine=engine), num_samples=8)
        assert model.generation_config.temperature == 1e-4  # restored afterwards
    finally:
        model.generation_config = saved
    distinct = {tuple(r.completion_ids[i].tolist()) for i in range(8)}
    assert len(distinct) > 1  # at temperature 1e-4 / top_k 1 all eight would be identical


def test_select_trim_concat(tiny):
    model, tok = tiny
    batch = _prompts(tok)
    torch.manual_seed(2)
    r = generate_rollouts(model, tok, batch, Sampling(max_new_tokens=6), num_samples=2)
    sub = r.select([5, 0]).trimmed()
    assert sub.completions == [r.completions[5], r.completions[0]]
    assert sub.prompt_mask.any(0).all() and sub.completion_mask.any(0)[-1]  # no all-padding column left
    assert sub.prompt_ids[0][sub.prompt_mask[0].bool()].tolist() == r.prompt_ids[5][r.prompt_mask[5].bool()].tolist()
    both = Rollout.concat([r.select([0, 1]).trimmed(), r.select([4, 5])], pad_id=tok.pad_token_id)
    assert both.completions == [r.completions[i] for i in (0, 1, 4, 5)]
    assert both.prompt_index.tolist() == [0, 0, 3, 3]
    for k, i in enumerate((0, 1, 4, 5)):
        assert both.completion_ids[k][both.completion_mask[k]].tolist() == r.completion_ids[i][r.completion_mask[i]].tolist()


def test_prompt_errors(tiny):
    _, tok = tiny
    with pytest.raises(ValueError, match=r"prompt 1: \d+ tokens, more than rollout.max_prompt_tokens=5"):
        encode_prompts(tok, ["abc", "a much longer prompt"], max_prompt_tokens=5)
    with pytest.raises(ValueError, match="no prompts"):
        encode_prompts(tok, [])

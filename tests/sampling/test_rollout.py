"""Batched sampling: group layout, EOS masks and truncation, clean sampling settings, row selection."""

from __future__ import annotations

import pytest
import torch

from apmpo.models import tiny_model
from apmpo.sampling.rollout import (
    Rollout,
    completion_mask_from_eos,
    encode_prompts,
    generate_rollouts,
)


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


def test_groups_masks_and_texts(tiny):
    model, tok = tiny
    batch = _prompts(tok)
    torch.manual_seed(0)
    r = generate_rollouts(model, tok, batch, num_samples=4, max_new_tokens=7, batch_size=5)
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


def test_sampling_is_seeded_and_greedy_is_deterministic(tiny):
    model, tok = tiny
    batch = _prompts(tok)
    torch.manual_seed(1)
    a = generate_rollouts(model, tok, batch, num_samples=3, max_new_tokens=6)
    torch.manual_seed(1)
    b = generate_rollouts(model, tok, batch, num_samples=3, max_new_tokens=6)
    assert torch.equal(a.completion_ids, b.completion_ids)
    g1 = generate_rollouts(model, tok, batch, num_samples=2, max_new_tokens=6, do_sample=False)
    assert torch.equal(g1.completion_ids[0::2], g1.completion_ids[1::2])  # greedy: identical samples


@pytest.mark.parametrize("do_sample, batch_size", [(False, 0), (True, 6)])
def test_shared_prefill_gives_the_same_samples(tiny, do_sample, batch_size):
    model, tok = tiny
    batch = _prompts(tok, ("1+1=", "what is 12+30?", "hi", "x"))
    torch.manual_seed(4)
    plain = generate_rollouts(model, tok, batch, num_samples=3, max_new_tokens=8, do_sample=do_sample,
                              batch_size=batch_size, share_prefill=False)
    torch.manual_seed(4)
    shared = generate_rollouts(model, tok, batch, num_samples=3, max_new_tokens=8, do_sample=do_sample,
                               batch_size=batch_size, share_prefill=True)
    assert torch.equal(plain.prompt_ids, shared.prompt_ids) and torch.equal(plain.completion_ids, shared.completion_ids)


def test_model_generation_defaults_do_not_leak(tiny):
    """A model shipping e.g. a near-zero temperature must still be sampled at the configured one."""
    from transformers import GenerationConfig

    model, tok = tiny
    batch = _prompts(tok)
    saved = model.generation_config
    model.generation_config = GenerationConfig(temperature=1e-4, top_k=1, do_sample=True, repetition_penalty=5.0,
                                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    try:
        torch.manual_seed(0)
        r = generate_rollouts(model, tok, batch, num_samples=8, max_new_tokens=6)
        assert model.generation_config.temperature == 1e-4  # restored afterwards
    finally:
        model.generation_config = saved
    distinct = {tuple(r.completion_ids[i].tolist()) for i in range(8)}
    assert len(distinct) > 1  # at temperature 1e-4 / top_k 1 all eight would be identical


def test_select_trim_concat(tiny):
    model, tok = tiny
    batch = _prompts(tok)
    torch.manual_seed(2)
    r = generate_rollouts(model, tok, batch, num_samples=2, max_new_tokens=6)
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

"""Tiny random Llama + character tokenizer: determinism, forward, generate, save/reload."""

import pytest
import torch

from apmpo.models import tiny_config, tiny_model, tiny_tokenizer
from apmpo.models.tiny import parse_tiny_spec


def test_same_seed_same_weights_and_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, _ = tiny_model(seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)  # building the model did not consume the global RNG
    b, _ = tiny_model(seed=5)
    c, _ = tiny_model(seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_forward_shapes_and_overrides():
    model, tokenizer = tiny_model(seed=0, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  num_key_value_heads=1)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    batch = tokenizer(["1+2=", "12+34="], return_tensors="pt", padding=True)
    logits = model(**batch).logits  # [2, 6, vocab]
    assert logits.shape == (2, 6, len(tokenizer))
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1, 1, 1]  # left padding


def test_generate_batched_left_padded_matches_single():
    model, tokenizer = tiny_model(seed=1)
    prompts = ["What is 3 + 4?", "7*8="]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=6, do_sample=False)  # [2, T + 6]
    assert out.shape[0] == 2 and out.shape[1] <= batch["input_ids"].shape[1] + 6
    single = tokenizer(prompts[1:], return_tensors="pt")
    alone = model.generate(**single, max_new_tokens=6, do_sample=False)
    new_batched = out[1, batch["input_ids"].shape[1]:].tolist()
    new_alone = alone[0, single["input_ids"].shape[1]:].tolist()
    assert new_batched[: len(new_alone)] == new_alone


def test_tokenizer_characters_specials_and_chat_template():
    tokenizer = tiny_tokenizer()
    text = "Solve: 12 * (3 - 4) = ?\nAnswer!"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text) and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    assert tokenizer("é")["input_ids"] == [tokenizer.unk_token_id]
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "2+2"}], add_generation_prompt=True,
                                         tokenize=False)
    assert chat == "<|user|>2+2<|end|><|assistant|>"
    assert len(tokenizer(chat)["input_ids"]) == 3 + 3  # role, end and assistant are single tokens
    assert tokenizer.decode(tokenizer(chat)["input_ids"], skip_special_tokens=True) == "2+2"


def test_save_and_reload(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = tiny_model(seed=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer2 = AutoTokenizer.from_pretrained(tmp_path)
    batch = tokenizer(["1+1=", "99-9="], return_tensors="pt", padding=True)
    assert torch.equal(model(**batch).logits, model2(**batch).logits)
    assert tokenizer2.chat_template == tokenizer.chat_template and tokenizer2.padding_side == "left"
    assert tokenizer2("a b")["input_ids"] == tokenizer("a b")["input_ids"]


def test_spec_parsing_and_errors():
    assert parse_tiny_spec("tiny") == {}
    assert parse_tiny_spec("tiny:") == {}
    parsed = parse_tiny_spec('tiny:{"hidden_size": 32, "hidden_act": "gelu"}')
    assert parsed == {"hidden_size": 32, "hidden_act": "gelu"}
    assert parse_tiny_spec("tiny:hidden_size=32, tie_word_embeddings=false,hidden_act=silu") == {
        "hidden_size": 32, "tie_word_embeddings": False, "hidden_act": "silu"}
    with pytest.raises(ValueError, match="is not key=value"):
        parse_tiny_spec("tiny:hidden_size")
    with pytest.raises(ValueError, match="malformed JSON"):
        parse_tiny_spec("tiny:{hidden_size: 3}")
    with pytest.raises(ValueError, match="unknown config field\\(s\\) hiden_size"):
        tiny_config(hiden_size=32)
    with pytest.raises(ValueError, match="not divisible by num_attention_heads"):
        tiny_config(hidden_size=30)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        tiny_config(vocab_size=10)

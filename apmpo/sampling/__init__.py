"""Sampling: prompt encoding (text and vision) and generation, below both the trainer and evaluation.

- :mod:`apmpo.sampling.encoder`: prompt encoders, chosen once from what the model loader
  returned (:func:`prompt_encoder_for`): attach images, render and encode prompts;
- :mod:`apmpo.sampling.rollout`: :func:`generate_rollouts`, G completions per prompt with
  ``generate`` (KV cache, left padding), and the :class:`Rollout` they come back in.
"""

from .encoder import (
    IMAGE_MARKER,
    PromptEncoder,
    TextPromptEncoder,
    VisionPromptEncoder,
    prompt_encoder_for,
)
from .rollout import (
    PromptBatch,
    Rollout,
    collate_extras,
    encode_prompts,
    eos_token_ids,
    generate_rollouts,
)

__all__ = [
    "IMAGE_MARKER",
    "PromptBatch",
    "PromptEncoder",
    "Rollout",
    "TextPromptEncoder",
    "VisionPromptEncoder",
    "collate_extras",
    "encode_prompts",
    "eos_token_ids",
    "generate_rollouts",
    "prompt_encoder_for",
]

"""Conventions for calling a transformers model, shared by sampling, the log-prob passes and checkpoints.

- :func:`unwrap_model`: the transformers model inside a PEFT wrapper;
- :func:`position_ids_from_mask`: positions of left-padded rows, as ``generate`` computes them;
- :func:`cache_argument`: the name of the KV-cache argument, which differs between
  transformers 4.x and 5.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

__all__ = ["cache_argument", "position_ids_from_mask", "unwrap_model"]


def unwrap_model(model: torch.nn.Module) -> Any:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), else ``model``.

    Typed ``Any``: a transformers model's attributes (``base_model``, ``generation_config``,
    ``save_pretrained``, ...) are not declared on ``torch.nn.Module``."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] positions counting only attended tokens, as ``generate`` computes them (pads at 0)."""
    positions = attention_mask.long().cumsum(-1) - 1  # [B, L]
    return positions.masked_fill(attention_mask == 0, 0)


def cache_argument(model: torch.nn.Module) -> str:
    """The name of the KV-cache argument/output: "cache" (transformers 5) or "past_key_values" (4.x)."""
    params = inspect.signature(unwrap_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"

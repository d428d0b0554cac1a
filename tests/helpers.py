"""Helpers shared by the test folders, each defined once: the tiny model, other Llama-family models, JSON lines files.

Real benchmark files are the copies shipped with the package (``apmpo.data.shipped_path``), so the tests
that read them always run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_MODEL = "tiny:num_hidden_layers=1,hidden_size=32,intermediate_size=64"
"""A one-layer random Llama with a character tokenizer (apmpo.models.tiny): seconds to train."""


def write_jsonl(path: Path, rows: list[Any], raw_lines: tuple[str, ...] = ()) -> Path:
    """One JSON object per line (a string row is written as it is, then ``raw_lines``); parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join([*lines, *raw_lines]) + "\n", encoding="utf-8")
    return path


def llama_family_model(tok: Any, family: str, *, hidden_size: int = 64, intermediate_size: int = 96,
                       num_hidden_layers: int = 2, **config: Any) -> Any:
    """A random ``family`` model ("qwen2", "qwen3", or "llama-biases": attention and MLP biases) over ``tok``'s
    vocabulary, 4 query / 2 key-value heads, seeded with ``torch.manual_seed(0)``; ``config`` adds config fields."""
    import torch
    import transformers

    common = {"vocab_size": len(tok), "hidden_size": hidden_size, "intermediate_size": intermediate_size,
              "num_hidden_layers": num_hidden_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
              "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}
    config_class, model_class = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "llama-biases": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    }[family]
    extra = {"attention_bias": True, "mlp_bias": True} if family == "llama-biases" else {}
    torch.manual_seed(0)
    return model_class(config_class(**common, **extra, **config))

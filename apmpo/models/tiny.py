"""Tiny randomly initialised Llama models with a character-level tokenizer, built in-process.

Tests and from-scratch studies need a causal LM that costs nothing to build and never
downloads anything. ``tiny_model(seed, **overrides)`` returns a ``LlamaForCausalLM``
(hidden size 64, 2 layers by default) and a character-level
``PreTrainedTokenizerFast``: one token per digit, letter, punctuation mark, space and
newline, plus special tokens (pad, unk, bos, eos and one per chat role) and a small
chat template, so the same prompt-rendering code path (``apply_chat_template``) is
exercised as with a real instruct model. Same seed and overrides, same weights.

The model and tokenizer save and reload with ``save_pretrained`` /
``from_pretrained`` like any Hugging Face checkpoint.
"""

from __future__ import annotations

import json
import string
from typing import Any

import torch

__all__ = [
    "TINY_DEFAULTS",
    "TINY_CHAT_TEMPLATE",
    "tiny_tokenizer",
    "tiny_config",
    "tiny_model",
    "parse_tiny_spec",
]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "<|end|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHARACTERS = string.digits + string.ascii_letters + string.punctuation + " \n"

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
"""Each message is ``<|role|>content<|end|>``; the generation prompt is ``<|assistant|>``."""

TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}
"""LlamaConfig fields of the default tiny model (anything else: LlamaConfig's default)."""


def tiny_tokenizer():
    """Character-level fast tokenizer: ids 0-6 are special, then one id per character.

    Unknown characters map to ``<unk>``; ``decode`` concatenates characters (no spaces
    inserted). Padding side is left (for generation); pad, bos and eos are distinct.
    """
    # heavy (transformers' tokenizers): imported on first use
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, UNK, BOS, EOS, *ROLE_TOKENS]
    vocab = {token: index for index, token in enumerate(specials)}
    for char in CHARACTERS:
        vocab[char] = len(vocab)
    # A BPE model without merges splits text into single characters from the vocab.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        model_max_length=TINY_DEFAULTS["max_position_embeddings"],
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_config(tokenizer=None, **overrides: Any):
    """A ``LlamaConfig`` for the tiny model; ``overrides`` replace ``TINY_DEFAULTS``.

    Unknown field names raise ValueError listing the valid ones (LlamaConfig itself
    would silently accept a misspelt name).
    """
    # heavy (transformers): imported on first use
    from transformers import LlamaConfig

    valid = set(LlamaConfig().to_dict())
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(
            f"tiny model: unknown config field(s) {', '.join(unknown)}; "
            f"valid LlamaConfig fields include: {', '.join(sorted(valid - {'transformers_version'}))}"
        )
    tokenizer = tokenizer or tiny_tokenizer()
    fields = {**TINY_DEFAULTS, **overrides}
    fields.setdefault("vocab_size", len(tokenizer))
    if fields["vocab_size"] < len(tokenizer):
        raise ValueError(
            f"tiny model: vocab_size={fields['vocab_size']} is smaller than the tokenizer's {len(tokenizer)} tokens"
        )
    if fields["hidden_size"] % fields["num_attention_heads"]:
        raise ValueError(
            f"tiny model: hidden_size={fields['hidden_size']} is not divisible by "
            f"num_attention_heads={fields['num_attention_heads']}"
        )
    if fields["num_attention_heads"] % fields.get("num_key_value_heads", fields["num_attention_heads"]):
        raise ValueError(
            f"tiny model: num_attention_heads={fields['num_attention_heads']} is not divisible by "
            f"num_key_value_heads={fields['num_key_value_heads']}"
        )
    return LlamaConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **fields,
    )


def tiny_model(seed: int = 0, **overrides: Any):
    """``(model, tokenizer)``: a random ``LlamaForCausalLM`` (fp32, eval mode) and its tokenizer.

    The weights depend only on ``seed`` and ``overrides``; the global torch RNG is left
    untouched.
    """
    # heavy (transformers): imported on first use
    from transformers import LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model, tokenizer


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word such as silu


def parse_tiny_spec(spec: str) -> dict[str, Any]:
    """Overrides from ``"tiny"``, ``"tiny:{json object}"`` or ``"tiny:key=value,key=value"``.

    Values in the key=value form are read as JSON when possible (``2``, ``true``,
    ``0.1``), else kept as strings.
    """
    if spec == "tiny":
        return {}
    if not spec.startswith("tiny:"):
        raise ValueError(f"not a tiny model spec: {spec!r} (expected 'tiny' or 'tiny:...')")
    body = spec[len("tiny:") :].strip()
    if not body:
        return {}
    if body.startswith("{"):
        try:
            overrides = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tiny model spec {spec!r}: malformed JSON ({exc.msg})") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"tiny model spec {spec!r}: expected a JSON object")
        return overrides
    overrides = {}
    for item in body.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"tiny model spec {spec!r}: {item!r} is not key=value (e.g. tiny:hidden_size=32,num_hidden_layers=1)"
            )
        overrides[key.strip()] = _parse_value(value.strip())
    return overrides

"""Sampling G completions per prompt: the fast sampling engine, or Hugging Face ``generate`` (KV cache, left padding).

``encode_prompts`` tokenizes rendered prompts into a left-padded ``PromptBatch``;
``generate_rollouts`` draws G completions of each prompt (or decodes greedily, for
evaluation) under one :class:`~apmpo.sampling.settings.Sampling`, in batches of
``batch_size`` sequences, and returns a ``Rollout``: prompt and completion token ids
with their masks, a truncation flag per completion and the decoded texts. The
completion mask covers the tokens up to and including the first EOS (pad may equal
EOS, so it is built from EOS positions, never from pad ids); a completion without EOS
within ``max_new_tokens`` is *truncated*.

Two samplers, chosen by ``Sampling.engine``:

- ``fast`` (default): :func:`apmpo.sampling.engine.sample_completions` -- one prefill
  per distinct prompt (images and per-token inputs of a vision-language prompt go to
  it once), finished rows leave the decode batch, its own decode step. A model it
  cannot decode (:func:`engine_for` says why: LoRA/PEFT projections, an architecture
  outside the Llama family) is sampled with ``generate`` instead; callers say so once
  at start-up (:func:`engine_message`).
- ``hf``: transformers' ``generate``, each prompt's KV cache computed once and copied to
  its G samples (``share_prefill``, text-only inputs).

Both draw from torch's default RNG, so ``torch.manual_seed`` (and a checkpoint's RNG
state) fixes the completions of either; the two draw differently, so the same seed
gives different samples under the two engines (greedy decoding agrees up to ties
within float rounding). ``Rollout.meta`` counts the work: ``generated_tokens``,
``row_steps`` (rows whose next-token logits were computed, summed over steps:
``generated_tokens / row_steps`` is the decode-slot use), ``generation_seconds``, the
engine used, and for the fast engine its decode steps and timings.

What the sampling pass produced is reused where it is exact: the training passes
consume these very token ids, masks and positions (no re-tokenisation of decoded text,
which does not round-trip). Its logits are not reused as old log-probs: the sampling
kernels differ from the training forward pass in the last bits, and in the on-policy
case (one update per rollout batch) the old log-probs are not needed at all.

Sampling settings are passed in full (``generate``: on a clean ``GenerationConfig``): a
model's own generation defaults (SmolLM2 ships temperature 0.2 / top_p 0.9, others a
repetition penalty) never leak into RL sampling. Extra per-prompt model inputs (image
tensors of a vision-language model) travel in ``PromptBatch.extras`` and are repeated
with their prompt; ``collate_extras`` concatenates them along dim 0 for a batch of
rows. Per-token inputs aligned with the prompt tokens (Qwen2-VL's ``mm_token_type_ids``)
travel in ``PromptBatch.token_inputs``, padded and trimmed with the prompt tokens and 0
over the completion tokens; ``PromptBatch.suppress_tokens`` are never sampled (a
vision-language model's image placeholders). :mod:`apmpo.sampling.encoder` fills these
fields.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from apmpo.models.forward import cache_argument, position_ids_from_mask, unwrap_model
from apmpo.sampling.engine import DecodeSpec, UnsupportedModelError, sample_completions, supports_model
from apmpo.sampling.settings import Sampling

__all__ = [
    "PromptBatch",
    "Rollout",
    "collate_extras",
    "encode_prompts",
    "engine_for",
    "engine_message",
    "eos_token_ids",
    "generate_rollouts",
]


@dataclass
class PromptBatch:
    """Tokenized prompts, left-padded."""

    input_ids: torch.Tensor
    """[B, P] prompt tokens, left-padded with the pad id."""
    attention_mask: torch.Tensor
    """[B, P] 1 on prompt tokens."""
    texts: list[str]
    """The rendered prompt strings."""
    extras: list[dict[str, torch.Tensor]] | None = None
    """Per-prompt extra model inputs (e.g. pixel_values, image_grid_thw), or None."""
    token_inputs: dict[str, torch.Tensor] | None = None
    """[B, P] per-token model inputs aligned with input_ids (e.g. mm_token_type_ids), left-padded with 0, or None."""
    suppress_tokens: list[int] | None = None
    """Token ids generation must never sample (e.g. image placeholders), or None."""

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def collate_extras(extras: Sequence[dict[str, torch.Tensor]] | None) -> dict[str, torch.Tensor]:
    """Concatenate per-row extra inputs along dim 0 (the layout Qwen2-VL and LLaVA-style models take).

    A row may lack a key (a text-only row among image rows): it contributes nothing to it.
    """
    if not extras:
        return {}
    keys = dict.fromkeys(k for e in extras for k in e)
    return {k: torch.cat([e[k] for e in extras if k in e], dim=0) for k in keys}


def encode_prompts(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    add_special_tokens: bool = False,
    max_prompt_tokens: int | None = None,
    device: torch.device | str = "cpu",
) -> PromptBatch:
    """Tokenize rendered prompts (left padding).

    ``add_special_tokens`` should be False for prompts rendered by a chat template (the
    template already holds BOS and role markers) and True for plain-text prompts.
    A prompt longer than ``max_prompt_tokens`` is an error naming its index.
    """
    if not texts:
        raise ValueError("encode_prompts: no prompts given")
    enc = tokenizer(
        list(texts), return_tensors="pt", padding=True, padding_side="left", add_special_tokens=add_special_tokens
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    lengths = mask.sum(-1)
    if int(lengths.min()) == 0:
        raise ValueError(f"prompt {int((lengths == 0).nonzero()[0])}: empty after tokenization")
    if max_prompt_tokens is not None and int(lengths.max()) > max_prompt_tokens:
        index = int((lengths > max_prompt_tokens).nonzero()[0])
        raise ValueError(
            f"prompt {index}: {int(lengths[index])} tokens, more than rollout.max_prompt_tokens={max_prompt_tokens}"
        )
    return PromptBatch(ids.to(device), mask.to(device), list(texts))


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a completion: the model's generation EOS id(s) and the tokenizer's."""
    ids: list[int] = []
    gen = getattr(unwrap_model(model), "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if int(v) not in ids:
                ids.append(int(v))
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer defines an EOS token")
    return ids


@dataclass
class Rollout:
    """B x G sampled completions (rows of a group are contiguous)."""

    prompt_ids: torch.Tensor
    """[N, P] left-padded prompt tokens."""
    prompt_mask: torch.Tensor
    """[N, P] 1 on prompt tokens."""
    completion_ids: torch.Tensor
    """[N, T] completion tokens, padded after EOS."""
    completion_mask: torch.Tensor
    """[N, T] bool, True up to and including the first EOS."""
    truncated: torch.Tensor
    """[N] bool, True when the completion reached max_new_tokens without EOS."""
    completions: list[str]
    """Decoded completions (special tokens removed)."""
    prompt_index: torch.Tensor
    """[N] index of each row's prompt in the batch of prompts."""
    extras: list[dict[str, torch.Tensor]] | None = None
    """Per-row extra model inputs (repeated from the prompt), or None."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Timing and counts of the sampling pass (tokens, seconds)."""
    token_inputs: dict[str, torch.Tensor] | None = None
    """[N, P] per-token model inputs aligned with prompt_ids (0 on padding), or None."""

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def completion_lengths(self) -> torch.Tensor:
        """[N] number of scored completion tokens per row."""
        return self.completion_mask.sum(-1)

    @property
    def sequence_lengths(self) -> torch.Tensor:
        """[N] prompt + completion tokens per row (for length sorting)."""
        return self.prompt_mask.sum(-1) + self.completion_mask.sum(-1)

    def select(self, index: torch.Tensor | Sequence[int]) -> Rollout:
        """The rows ``index``, in that order (padding not yet trimmed)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        dev = self.completion_ids.device
        i = idx.to(dev)
        return Rollout(
            self.prompt_ids[i],
            self.prompt_mask[i],
            self.completion_ids[i],
            self.completion_mask[i],
            self.truncated[i],
            [self.completions[k] for k in idx.tolist()],
            self.prompt_index[i],
            [self.extras[k] for k in idx.tolist()] if self.extras is not None else None,
            dict(self.meta),
            {k: v[i] for k, v in self.token_inputs.items()} if self.token_inputs is not None else None,
        )

    def trimmed(self) -> Rollout:
        """The same rows without the all-padding columns (left of the prompts, right of the completions)."""
        keep_p = self.prompt_mask.any(0).nonzero()
        keep_c = self.completion_mask.any(0).nonzero()
        p0 = int(keep_p[0]) if len(keep_p) else self.prompt_mask.shape[1] - 1
        c1 = int(keep_c[-1]) + 1 if len(keep_c) else 1
        return Rollout(
            self.prompt_ids[:, p0:],
            self.prompt_mask[:, p0:],
            self.completion_ids[:, :c1],
            self.completion_mask[:, :c1],
            self.truncated,
            self.completions,
            self.prompt_index,
            self.extras,
            dict(self.meta),
            {k: v[:, p0:] for k, v in self.token_inputs.items()} if self.token_inputs is not None else None,
        )

    def model_inputs(self) -> dict[str, Any]:
        """Extra model inputs for these rows over prompt + completion: the collated extras, and the
        per-token inputs extended with 0 over the completion columns ([N, P + T])."""
        inputs = collate_extras(self.extras)
        for name, values in (self.token_inputs or {}).items():
            tail = values.new_zeros((values.shape[0], self.completion_ids.shape[1]))  # [N, T]
            inputs[name] = torch.cat([values, tail], dim=1)  # [N, P + T]
        return inputs

    @staticmethod
    def concat(parts: Sequence[Rollout], pad_id: int) -> Rollout:
        """Stack rollouts row-wise, re-padding prompts (left) and completions (right) to common widths."""
        if not parts:
            raise ValueError("Rollout.concat: nothing to concatenate")
        P = max(r.prompt_ids.shape[1] for r in parts)
        T = max(r.completion_ids.shape[1] for r in parts)
        offsets, total = [], 0
        for r in parts:
            offsets.append(total)
            total += int(r.prompt_index.max()) + 1 if len(r) else 0
        return Rollout(
            torch.cat([_pad_left(r.prompt_ids, P, pad_id) for r in parts]),
            torch.cat([_pad_left(r.prompt_mask, P, 0) for r in parts]),
            torch.cat([_pad_right(r.completion_ids, T, pad_id) for r in parts]),
            torch.cat([_pad_right(r.completion_mask, T, False) for r in parts]),
            torch.cat([r.truncated for r in parts]),
            [c for r in parts for c in r.completions],
            torch.cat([r.prompt_index + off for r, off in zip(parts, offsets)]),
            [e for r in parts for e in r.extras or []] if all(r.extras is not None for r in parts) else None,
            _merge_meta([r.meta for r in parts]),
            _concat_token_inputs([r.token_inputs for r in parts], P),
        )


def _concat_token_inputs(parts: Sequence[dict[str, torch.Tensor] | None], width: int) -> dict[str, torch.Tensor] | None:
    """Per-token inputs of several rollouts, left-padded with 0 to ``width`` and stacked (None unless all have them)."""
    present = [p for p in parts if p is not None]
    if not present or len(present) != len(parts):
        return None
    return {k: torch.cat([_pad_left(p[k], width, 0) for p in present]) for k in present[0]}


def _merge_meta(metas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metas:
        for k, v in m.items():
            out[k] = out.get(k, 0) + v if isinstance(v, (int, float)) else v
    return out


def _pad_left(t: torch.Tensor, width: int, value: Any) -> torch.Tensor:
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=1)


def _pad_right(t: torch.Tensor, width: int, value: Any) -> torch.Tensor:
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)


@contextlib.contextmanager
def _clean_generation_config(model: Any, **settings: Any) -> Iterator[Any]:
    """Temporarily give the model a generation config holding only ``settings``."""
    # heavy (transformers): imported on first use
    from transformers import GenerationConfig

    inner = unwrap_model(model)
    saved = inner.generation_config
    inner.generation_config = GenerationConfig(**settings)
    try:
        yield inner.generation_config
    finally:
        inner.generation_config = saved


def completion_mask_from_eos(completion_ids: torch.Tensor, eos_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, T] mask up to and including the first EOS, [N] truncated = no EOS in the row)."""
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos_ids), device=completion_ids.device))  # [N, T]
    eos_seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # [N, T]
    mask = ~eos_seen_before
    truncated = ~is_eos.any(-1)
    return mask, truncated


def engine_for(model: Any, sampling: Sampling) -> tuple[str, str | None]:
    """(the engine that samples ``model`` under ``sampling``, why the fast engine is not used or None)."""
    if sampling.engine == "hf":
        return "hf", None
    reason = supports_model(model)
    return ("hf", reason) if reason is not None else ("fast", None)


def engine_message(model: Any, sampling: Sampling, setting: str = "rollout.engine") -> tuple[str, bool]:
    """(one start-up line naming the sampler, whether it is a warning: the fast engine asked for and not usable).

    ``setting`` is how the user selects the engine (``rollout.engine``, ``--engine``), for the line's hint.
    """
    engine, reason = engine_for(model, sampling)
    if engine == "fast":
        return "sampling: the fast sampling engine (apmpo.sampling.engine)", False
    if reason is None:
        return f"sampling: transformers generate ({setting}=hf)", False
    return (
        f"{setting}=fast cannot decode this model ({reason}); its completions are sampled with transformers "
        f"generate instead (slower; set {setting}=hf to choose generate and silence this warning)",
        True,
    )


@dataclass
class _Part:
    """The rows of one sampling call: prompts (shared left padding dropped) and completions."""

    prompt_ids: torch.Tensor
    """[b*G, P_k] prompt tokens of each row."""
    prompt_mask: torch.Tensor
    """[b*G, P_k]."""
    token_inputs: dict[str, torch.Tensor]
    """[b*G, P_k] per-token inputs of each row."""
    completion_ids: torch.Tensor
    """[b*G, T_k] completions, padded after their end."""
    completion_mask: torch.Tensor
    """[b*G, T_k] bool, True up to and including the first EOS."""
    truncated: torch.Tensor
    """[b*G] no EOS within max_new_tokens."""
    stats: dict[str, Any]
    """Counts and timings of the call (summed over calls)."""


@torch.no_grad()
def generate_rollouts(
    model: Any,
    tokenizer: Any,
    prompts: PromptBatch,
    sampling: Sampling,
    *,
    num_samples: int,
    batch_size: int = 0,
    share_prefill: bool = True,
) -> Rollout:
    """Sample ``num_samples`` completions for each prompt under ``sampling`` (greedy at temperature 0).

    Rows are ordered prompt by prompt: rows [i*G, (i+1)*G) belong to prompt i.
    ``batch_size`` bounds the sequences per sampling call (0: all at once; whole
    groups per call); each call drops the padding columns its own rows do not need.
    ``share_prefill`` (hf engine): run each prompt through the model once and copy its
    KV cache to its G samples, instead of processing the same prompt G times (text-only
    inputs); the fast engine always does. ``prompts.suppress_tokens`` are never sampled;
    ``prompts.extras`` and ``prompts.token_inputs`` go to the model with their prompt.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
    if not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be a Sampling (apmpo.sampling.settings), got {type(sampling).__name__}")
    eos_ids = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    engine, _ = engine_for(model, sampling)
    spec = DecodeSpec(sampling, tuple(eos_ids), int(pad_id), tuple(prompts.suppress_tokens or ()))
    device = next(unwrap_model(model).parameters()).device
    n_prompts, G = len(prompts), num_samples
    per_call = max(1, batch_size // G) if batch_size and batch_size > 0 else n_prompts  # prompts per call
    share = share_prefill and G > 1 and prompts.extras is None and prompts.token_inputs is None

    was_training = model.training
    model.eval()
    parts: list[_Part] = []
    start_time = time.perf_counter()
    try:
        for start in range(0, n_prompts, per_call):
            index = list(range(start, min(start + per_call, n_prompts)))
            if engine == "fast":
                try:
                    parts.append(_sample_fast(model, prompts, index, spec, G, device))
                    continue
                except UnsupportedModelError:  # a limit that depends on the lengths (sliding window): generate
                    engine = "hf"
            parts.append(_sample_hf(model, prompts, index, spec, G, device, share))
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start_time

    P = max(p.prompt_ids.shape[1] for p in parts)
    T = max(max(p.completion_ids.shape[1] for p in parts), 1)
    completion_mask = torch.cat([_pad_right(p.completion_mask, T, False) for p in parts])  # [N, T]
    completion_ids = torch.cat([_pad_right(p.completion_ids, T, pad_id) for p in parts])  # [N, T]
    texts = tokenizer.batch_decode(
        [row[m].tolist() for row, m in zip(completion_ids, completion_mask)], skip_special_tokens=True
    )
    order = torch.arange(n_prompts).repeat_interleave(G)  # [N] prompt of each row
    token_rows = None
    if prompts.token_inputs is not None:
        token_rows = {
            k: torch.cat([_pad_left(p.token_inputs[k], P, 0) for p in parts]) for k in prompts.token_inputs
        }  # [N, P]
    meta = _merge_meta([p.stats for p in parts])
    meta.update(generated_tokens=int(completion_mask.sum()), generation_seconds=seconds, engine=engine)
    return Rollout(
        torch.cat([_pad_left(p.prompt_ids, P, pad_id) for p in parts]),  # [N, P]
        torch.cat([_pad_left(p.prompt_mask, P, 0) for p in parts]),
        completion_ids,
        completion_mask,
        torch.cat([p.truncated for p in parts]),
        texts,
        order.to(device),
        [prompts.extras[k] for k in order.tolist()] if prompts.extras is not None else None,
        meta,
        token_rows,
    )


def _call_prompts(
    prompts: PromptBatch, index: list[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """([b, P_k] ids, mask, per-token inputs) of the prompts ``index``, without the padding columns they share."""
    ids = prompts.input_ids[index].to(device)  # [b, P]
    mask = prompts.attention_mask[index].to(device)
    first = int(mask.any(0).nonzero()[0])  # drop shared left padding
    tokens = {k: v[index].to(device)[:, first:] for k, v in (prompts.token_inputs or {}).items()}  # [b, P_k]
    return ids[:, first:], mask[:, first:], tokens


def _sample_fast(
    model: Any, prompts: PromptBatch, index: list[int], spec: DecodeSpec, G: int, device: torch.device
) -> _Part:
    """The fast engine on the prompts ``index``: one prefill per prompt, G completions each."""
    ids, mask, tokens = _call_prompts(prompts, index, device)
    extras = collate_extras([prompts.extras[k] for k in index]) if prompts.extras is not None else None
    out = sample_completions(model, ids, mask, spec, num_samples=G, model_inputs=extras, token_inputs=tokens or None)
    stats = out.stats
    return _Part(
        ids.repeat_interleave(G, 0),
        mask.repeat_interleave(G, 0),
        {k: v.repeat_interleave(G, 0) for k, v in tokens.items()},
        out.completion_ids,
        out.completion_mask,
        out.truncated,
        {
            "row_steps": stats["row_steps"],
            "decode_steps": stats["decode_steps"],
            "decode_row_steps": stats["row_steps"] - stats["step_rows"][0],
            "prefill_seconds": stats["prefill_seconds"],
            "decode_seconds": stats["decode_seconds"],
            "weight_seconds": stats["weight_seconds"],
        },
    )


def _sample_hf(
    model: Any,
    prompts: PromptBatch,
    index: list[int],
    spec: DecodeSpec,
    G: int,
    device: torch.device,
    share: bool,
) -> _Part:
    """transformers ``generate`` on the prompts ``index`` repeated G times (every row decoded until all end)."""
    ids, mask, tokens = _call_prompts(prompts, index, device)
    settings: dict[str, Any] = {
        **spec.sampling.generation_kwargs(),
        "eos_token_id": list(spec.stop_token_ids),
        "pad_token_id": spec.pad_token_id,
        "num_beams": 1,
        "use_cache": True,
    }
    if spec.suppress_token_ids:
        settings["suppress_tokens"] = list(spec.suppress_token_ids)
    extra: dict[str, Any] = {}
    if prompts.extras is not None:
        extra = collate_extras([prompts.extras[k] for k in index for _ in range(G)])
    rows_ids, rows_mask = ids.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)  # [b*G, P_k]
    rows_tokens = {k: v.repeat_interleave(G, 0) for k, v in tokens.items()}  # [b*G, P_k]
    extra.update(rows_tokens)
    if share and ids.shape[1] > 1:
        extra[cache_argument(model)] = _shared_prefix_cache(model, ids, mask, G)
    with _clean_generation_config(model, **settings) as gen_config:
        out = model.generate(input_ids=rows_ids, attention_mask=rows_mask, generation_config=gen_config, **extra)
    completion_ids = out[:, rows_ids.shape[1] :]  # [b*G, T_k]
    completion_mask, truncated = completion_mask_from_eos(completion_ids, spec.stop_token_ids)
    # every forward pass of generate computes the next-token logits of all b*G rows: one per generated position
    return _Part(
        rows_ids,
        rows_mask,
        rows_tokens,
        completion_ids,
        completion_mask,
        truncated,
        {"row_steps": rows_ids.shape[0] * completion_ids.shape[1]},
    )


def _shared_prefix_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor, copies: int) -> Any:
    """KV cache of every prompt but its last token, computed once and repeated for its ``copies`` samples.

    ``generate`` then only runs the last prompt token (with the positions it derives from
    the attention mask, as here) before sampling.
    """
    prefix_mask = mask[:, :-1]
    out = model(
        input_ids=ids[:, :-1],
        attention_mask=prefix_mask,
        position_ids=position_ids_from_mask(prefix_mask),
        use_cache=True,
    )
    cache = out[cache_argument(model)]
    cache.batch_repeat_interleave(copies)
    return cache

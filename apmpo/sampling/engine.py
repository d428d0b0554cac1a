"""The fast sampling engine: G completions per prompt, decoding only the rows still running.

What it computes is what ``generate`` computes for the same settings (greedy: the same
argmax; sampling: the same distribution), the way RL rollouts need it:

1. **Shared prompt prefill.** Each distinct prompt runs through the model body once
   (the transformers forward pass, so vision inputs -- ``pixel_values``,
   ``image_grid_thw``, ``mm_token_type_ids`` -- and multimodal rotary positions are the
   model's own); its KV cache is copied to its G rows and its last hidden state gives
   the G first-token distributions.
2. **A pre-allocated KV cache that only holds running rows.** Keys/values of all layers
   live in one buffer ``[layers, 2, rows, kv_heads, prompt + max_new - 1, head_dim]``
   written in place (no per-step concatenation). When rows finish, the rows at the end
   of the running block move into their slots (one copy per finished row), so a decode
   step computes exactly the rows that still produce tokens: decode-slot use, completion
   tokens / row-steps computed, is 100%.
3. **Its own decode step** for the Llama family of decoders (Llama, SmolLM2, Mistral
   without a sliding window, Qwen2/2.5, Qwen3, and the text decoder of Qwen2-VL /
   Qwen2.5-VL): q/k/v and gate/up projections fused into one matrix each, rotary
   positions computed once per step, attention with ``scaled_dot_product_attention``
   over the cache buffer (grouped-query heads without repeating keys/values), no mask
   building or cache bookkeeping of the generic forward. On CPU the fused
   matrices are prepacked for oneDNN (``torch.ops.mkldnn``), 2-3x faster than
   ``F.linear`` at the small row counts of decoding, for one copy of the weights
   while sampling (``weight_layout="shared"``: no copy, slower); elsewhere ``F.linear``.
4. **Token selection without the 49k-wide ``torch.multinomial``.** Suppressed tokens,
   temperature, top-k and top-p are applied as transformers' logits processors do (same
   order, same tie rule for top-k, the same kept set for top-p up to float rounding of
   the cumulative mass at its boundary); sampling is
   inverse-CDF sampling in two levels (a block of 256 tokens, then a token in it) with
   two uniforms per row drawn from the torch RNG, cumulative sums in float64. Top-p
   looks at the k most probable tokens only (k doubles until they hold the top-p mass),
   never sorts the vocabulary.

Exactness: the sampled distribution is the softmax of the processed fp32 logits, as
with ``torch.multinomial`` (up to float64 rounding of the cumulative sums). The logits
themselves differ from the generic forward pass in the last bits (other matmul kernels
and summation orders), so greedy decoding can only differ where two tokens tie to
within that rounding.

Rotary positions: a text row's next position is its prompt length plus the tokens
generated so far (as ``generate`` computes them from the attention mask); a
multimodal-RoPE model adds the per-prompt delta its prefill stored in ``rope_deltas``
(decode positions are then equal in the temporal/height/width sections, i.e. ordinary
RoPE).

Departures and limits: models outside the Llama family, a non-``nn.Linear`` projection
(a LoRA/PEFT layer), logit soft-capping, a sliding window shorter than the sequence or
a rotary embedding whose frequencies change with the length ("dynamic", "longrope")
raise :class:`UnsupportedModelError` (:func:`supports_model` says why beforehand);
:func:`apmpo.sampling.rollout.generate_rollouts` then samples with transformers'
``generate``. Stop
conditions are token ids (EOS and extra stop tokens) and the token budget, not strings.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from apmpo.models.forward import cache_argument, position_ids_from_mask, unwrap_model
from apmpo.sampling.settings import Sampling

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "WEIGHT_LAYOUTS",
    "Completions",
    "DecodeSpec",
    "NonFiniteLogitsError",
    "UnsupportedModelError",
    "sample_completions",
    "select_tokens",
    "supports_model",
]

SUPPORTED_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "qwen2_vl",
        "qwen2_5_vl",
    }
)
"""``config.model_type`` values whose decoder layers the engine's decode step implements."""

_STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})
"""Rotary types whose inverse frequencies and scaling do not depend on the sequence length."""

_VISION_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")
"""Prefill inputs after which a multimodal model computes its own (M-RoPE) positions."""

_BLOCK = 256
"""Tokens per block of the two-level inverse-CDF sampler."""

_TOP_P_CANDIDATES = 64
"""Candidates the top-p rule starts from (doubled until they hold the top-p mass)."""


class UnsupportedModelError(ValueError):
    """The model's architecture is not one the engine's decode step implements."""


class NonFiniteLogitsError(RuntimeError):
    """A row's next-token logits hold NaN or +inf, or no token is left to sample (as torch.multinomial refuses)."""


@dataclass(frozen=True)
class DecodeSpec:
    """One call's decoding: the shared sampling settings plus the token ids that end, pad and are never produced.

    Temperature, top-p, top-k and the length limit are :class:`~apmpo.sampling.settings.Sampling`'s
    (checked there, with the trainer's and evaluation's settings); temperature 0 is greedy decoding.
    """

    sampling: Sampling
    """Temperature (0: greedy), top-p, top-k and max_new_tokens."""
    stop_token_ids: tuple[int, ...]
    """Token ids that end a completion (EOS ids and any extra stop tokens); the stop token is part of the completion."""
    pad_token_id: int
    """Fills the completion tensor after a completion's end."""
    suppress_token_ids: tuple[int, ...] = ()
    """Token ids never produced (their logits are set to -inf first, as transformers' ``suppress_tokens``)."""

    def __post_init__(self):
        if not isinstance(self.sampling, Sampling):
            raise TypeError(f"DecodeSpec.sampling must be a Sampling, got {type(self.sampling).__name__}")
        problems = []
        for name in ("stop_token_ids", "suppress_token_ids"):
            values = getattr(self, name)
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                problems.append(f"{name} must hold token ids (integers >= 0), got {values!r}")
        if isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int) or self.pad_token_id < 0:
            problems.append(f"pad_token_id must be a token id (integer >= 0), got {self.pad_token_id!r}")
        if set(self.stop_token_ids) & set(self.suppress_token_ids):
            problems.append(
                f"stop tokens {sorted(set(self.stop_token_ids) & set(self.suppress_token_ids))} are also "
                "suppressed: no completion could end before max_new_tokens"
            )
        if problems:
            raise ValueError("invalid decoding specification: " + "; ".join(problems))

    @property
    def do_sample(self) -> bool:
        """False: greedy decoding (argmax); temperature / top-p / top-k unused."""
        return not self.sampling.greedy

    @property
    def max_new_tokens(self) -> int:
        """Most tokens per completion; a completion that reaches it without a stop token is truncated."""
        return self.sampling.max_new_tokens

    @property
    def temperature(self) -> float:
        """Logits are divided by it before top-k / top-p (sampling only)."""
        return self.sampling.temperature

    @property
    def top_p(self) -> float:
        """Nucleus sampling: keep the most probable tokens whose preceding mass is below it; 1 = off."""
        return self.sampling.top_p

    @property
    def top_k(self) -> int:
        """Keep the top_k most probable tokens (and ties with the k-th); 0 = off."""
        return self.sampling.top_k


@dataclass
class Completions:
    """N = B x G completions, rows of a prompt contiguous (rows [i*G, (i+1)*G) belong to prompt i)."""

    completion_ids: torch.Tensor
    """[N, T] sampled tokens, ``pad_token_id`` after each completion's end; T = the longest completion."""
    completion_mask: torch.Tensor
    """[N, T] bool, True on each completion's tokens (up to and including its stop token)."""
    lengths: torch.Tensor
    """[N] tokens per completion."""
    truncated: torch.Tensor
    """[N] bool, True when the completion reached max_new_tokens without a stop token."""
    finish_reasons: list[str]
    """Per row: "stop" (a stop token was produced) or "length" (max_new_tokens reached)."""
    prompt_index: torch.Tensor
    """[N] index of each row's prompt."""
    log_probs: torch.Tensor | None = None
    """[N, T] float32 log-probability of each sampled token under the temperature-scaled distribution (before
    suppression, top-k and top-p, as the training pass computes it), 0 after the end; None unless requested."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Counts and timings: generated_tokens, row_steps (rows whose logits were computed, summed over steps),
    decode_steps, prefill_seconds, decode_seconds, generation_seconds, weight_seconds, compactions."""

    def __len__(self) -> int:
        return self.completion_ids.shape[0]


# --------------------------------------------------------------------------- token selection


def _inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """[n] index i with cdf[i-1] <= u * total < cdf[i], for non-decreasing float64 ``cdf`` [n, K] and u in [0, 1).

    The target is kept below the total, so an index whose mass is zero is never returned.
    """
    total = cdf[:, -1:]  # [n, 1]
    target = torch.minimum(u[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True)[:, 0]  # [n]


def _sample_weights(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """[n] index drawn with probability weights / weights.sum(-1), from two uniforms per row ([n, 2])."""
    n, V = weights.shape
    blocks = -(-V // _BLOCK)
    if blocks * _BLOCK != V:
        weights = F.pad(weights, (0, blocks * _BLOCK - V))
    grouped = weights.view(n, blocks, _BLOCK)  # [n, nb, 256]
    block = _inverse_cdf(grouped.sum(-1, dtype=torch.float64).cumsum(-1), u[:, 0])  # [n]
    inside = grouped[torch.arange(n, device=weights.device), block]  # [n, 256]
    token = _inverse_cdf(inside.cumsum(-1, dtype=torch.float64), u[:, 1])  # [n]
    return block * _BLOCK + token


def _sample_top_p(weights: torch.Tensor, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """[n] token drawn from ``weights`` restricted to transformers' top-p set.

    ``TopPLogitsWarper`` removes a token when the mass of the tokens not more probable
    than it (itself included) is <= 1 - top_p, i.e. keeps it when the mass of the more
    probable tokens is < top_p. Only the k most probable tokens are looked at; k doubles
    until, in every row, they hold at least top_p of the mass (the next token is then out).
    """
    n, V = weights.shape
    total = weights.sum(-1, dtype=torch.float64)  # [n]
    k = min(V, _TOP_P_CANDIDATES)
    while True:
        top, index = weights.topk(k, dim=-1)  # [n, k] descending
        probs = top.double() / total[:, None]  # [n, k]
        mass = probs.cumsum(-1)  # [n, k]
        if k == V or bool((mass[:, -1] >= top_p).all()):
            break
        k = min(V, 2 * k)
    kept = probs.masked_fill(mass - probs >= top_p, 0.0)  # [n, k]
    choice = _inverse_cdf(kept.cumsum(-1), u[:, 0])  # [n]
    return index.gather(1, choice[:, None])[:, 0]


def select_tokens(logits: torch.Tensor, settings: DecodeSpec, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """[n] next tokens from [n, V] logits under ``settings`` (``logits`` is modified in place).

    Greedy: argmax after suppression. Sampling: suppression, temperature, top-k, top-p in
    transformers' order, then a draw from the softmax; ``uniforms`` [n, 2] float64 in [0, 1).
    """
    if settings.suppress_token_ids:
        index = torch.tensor(settings.suppress_token_ids, device=logits.device)
        logits.index_fill_(1, index[index < logits.shape[1]], -math.inf)
    if not settings.do_sample:
        return logits.argmax(-1)
    if uniforms is None:
        raise ValueError("select_tokens: sampling needs uniforms [n, 2]")
    if settings.temperature != 1.0:
        logits.div_(settings.temperature)
    V = logits.shape[1]
    if 0 < settings.top_k < V:
        kth = logits.topk(settings.top_k, dim=-1).values[:, -1:]  # [n, 1]
        logits.masked_fill_(logits < kth, -math.inf)
    peak = logits.amax(-1, keepdim=True)  # [n, 1]
    if not bool(torch.isfinite(peak).all()):  # NaN or +inf logits (a diverged model), or every token excluded
        row = int((~torch.isfinite(peak[:, 0])).nonzero()[0])
        raise NonFiniteLogitsError(
            f"row {row}: the next-token logits are not finite (largest: {float(peak[row, 0])}), no distribution "
            "to sample from"
        )
    weights = logits.sub_(peak).exp_()  # [n, V] unnormalised softmax
    if settings.top_p < 1.0:
        return _sample_top_p(weights, settings.top_p, uniforms)
    return _sample_weights(weights, uniforms)


# --------------------------------------------------------------------------- the decoder


WEIGHT_LAYOUTS = ("prepacked", "fused", "shared")
"""How the decode step holds the projection weights: ``prepacked`` (q/k/v and gate/up concatenated and
reordered for oneDNN: CPU only, fastest there, one copy of the weights), ``fused`` (concatenated, plain:
fewer kernel launches on GPU, a copy of q/k/v and gate/up), ``shared`` (the model's own tensors: no copy;
on CPU still multiplied by oneDNN where it runs)."""


class _Linear:
    """x W^T + b of one or more ``nn.Linear`` side by side (outputs concatenated), weights held per ``layout``.

    ``onednn``: multiply with oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, CPU),
    which takes prepacked and plain weights alike, instead of ``F.linear``.
    """

    def __init__(self, modules: list[Any], layout: str, onednn: bool):
        self.onednn = onednn
        if layout == "shared" or len(modules) == 1 and layout == "fused":
            self.parts = [(m.weight, m.bias) for m in modules]
            return
        weight = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
        bias = None
        if any(m.bias is not None for m in modules):
            bias = torch.cat([m.bias if m.bias is not None else m.weight.new_zeros(m.out_features) for m in modules])
        if layout == "prepacked":
            weight = torch.ops.mkldnn._reorder_linear_weight(weight)
        self.parts = [(weight, bias)]

    def _one(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1:
            return self._one(x, *self.parts[0])
        return torch.cat([self._one(x, w, b) for w, b in self.parts], dim=-1)


@functools.cache
def _onednn_usable(device: torch.device, dtype: torch.dtype) -> bool:
    """True when oneDNN's prepacked linear runs here and agrees with ``F.linear`` (checked once per device/dtype)."""
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    probe = SimpleNamespace(weight=torch.linspace(-1, 1, 24 * 16, dtype=dtype).view(24, 16), bias=None)  # no RNG use
    x = torch.linspace(1, -1, 3 * 16, dtype=dtype).view(3, 16)
    try:
        out = _Linear([probe], "prepacked", onednn=True)(x)
    except (RuntimeError, NotImplementedError):
        return False
    return bool(torch.allclose(out.float(), F.linear(x, probe.weight).float(), atol=1e-2, rtol=1e-2))


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The Llama/Qwen RMSNorm (statistics in float32); one fused op where torch has it."""
    if _FUSED_RMS_NORM:
        return F.rms_norm(x, weight.shape, weight, eps)
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE with the rotate-half layout: x [n, heads, d], cos/sin [n, 1, d]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _sdpa_supports_gqa() -> bool:
    """True when ``scaled_dot_product_attention`` takes ``enable_gqa`` (torch >= 2.5)."""
    q, kv = torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 2, 4)
    try:
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
    except TypeError:
        return False
    return True


_FUSED_RMS_NORM = hasattr(F, "rms_norm")
"""torch >= 2.4 has a fused RMSNorm."""

_SDPA_GQA = _sdpa_supports_gqa()
"""Grouped-query attention without repeating keys/values (else they are repeated per query head)."""


def _attend(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, scale: float
) -> torch.Tensor:
    """[n, heads, d] attention output of one query per row over [n, kv_heads, L, d] keys/values ([n, 1, 1, L] mask)."""
    group = q.shape[1] // keys.shape[1]
    extra = {}
    if group > 1 and _SDPA_GQA:
        extra["enable_gqa"] = True
    elif group > 1:
        keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
    out = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=valid, scale=scale, **extra)
    return out[:, :, 0]  # [n, heads, d]


def _is_linear(module: Any) -> bool:
    return type(module) is torch.nn.Linear


@dataclass
class _Layer:
    qkv: _Linear
    o: _Linear
    gate_up: _Linear
    down: _Linear
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    eps: float
    act: Any
    qk_norms: tuple[tuple[torch.Tensor, float], tuple[torch.Tensor, float]] | None
    """Per-head RMSNorm (weight, eps) of the queries and of the keys (Qwen3), or None."""


def _text_decoder(inner: Any) -> Any:
    """The module holding the decoder layers, final norm and rotary embedding (the language model of a VLM)."""
    candidates = []
    get_decoder = getattr(inner, "get_decoder", None)
    if callable(get_decoder):
        candidates.append(get_decoder())
    body = getattr(inner, "model", None)
    candidates += [body, getattr(body, "language_model", None)]
    for module in candidates:
        if module is not None and all(hasattr(module, a) for a in ("layers", "norm", "rotary_emb")):
            return module
    raise UnsupportedModelError(f"{type(inner).__name__}: no decoder with layers, norm and rotary_emb found")


def _supported_decoder(inner: Any) -> Any:
    """The text decoder of ``inner``; raises UnsupportedModelError naming the first feature the decode step lacks."""
    name = type(inner).__name__
    config = inner.config
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{name}: model_type {model_type!r} is not supported by the fast engine "
            f"(supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))})"
        )
    decoder = _text_decoder(inner)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "final_logit_softcapping", None):
        raise UnsupportedModelError(f"{name}: logit soft-capping is not supported by the fast engine")
    rotary = decoder.rotary_emb
    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type not in _STATIC_ROPE_TYPES or not hasattr(rotary, "inv_freq"):
        raise UnsupportedModelError(f"{name}: rotary type {rope_type!r} is not supported by the fast engine")
    layer_types = set(getattr(text_config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        raise UnsupportedModelError(f"{name}: layer types {sorted(layer_types)} (only full attention is supported)")
    head = inner.get_output_embeddings()
    if not _is_linear(head):
        raise UnsupportedModelError(f"{name}: the output layer is a {type(head).__name__}, not a plain nn.Linear")
    for index, layer in enumerate(decoder.layers):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        parts = {f"self_attn.{p}": getattr(attn, p, None) for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
        parts.update({f"mlp.{p}": getattr(mlp, p, None) for p in ("gate_proj", "up_proj", "down_proj")})
        for part, module in parts.items():
            if not _is_linear(module):
                raise UnsupportedModelError(
                    f"{name}: layer {index} {part} is a {type(module).__name__}, not a plain nn.Linear (LoRA/PEFT "
                    "layers are not supported by the fast engine: merge the adapters to use it)"
                )
        for norm in ("input_layernorm", "post_attention_layernorm"):
            if not hasattr(getattr(layer, norm, None), "variance_epsilon"):
                raise UnsupportedModelError(f"{name}: layer {index} {norm} is not an RMSNorm")
    return decoder


def _layer_weights(layer: Any, layout: str, onednn: bool) -> _Layer:
    attn, mlp = layer.self_attn, layer.mlp
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    return _Layer(
        qkv=_Linear([attn.q_proj, attn.k_proj, attn.v_proj], layout, onednn),
        o=_Linear([attn.o_proj], layout, onednn),
        gate_up=_Linear([mlp.gate_proj, mlp.up_proj], layout, onednn),
        down=_Linear([mlp.down_proj], layout, onednn),
        input_norm=layer.input_layernorm.weight,
        post_norm=layer.post_attention_layernorm.weight,
        eps=float(layer.input_layernorm.variance_epsilon),
        act=mlp.act_fn,
        qk_norms=((q_norm.weight, float(q_norm.variance_epsilon)), (k_norm.weight, float(k_norm.variance_epsilon)))
        if q_norm is not None and k_norm is not None
        else None,
    )


class _Decoder:
    """The decode step of a Llama-family decoder over a :class:`_KVCache` (one new token per running row)."""

    def __init__(self, inner: Any, layout: str = "auto"):
        decoder = _supported_decoder(inner)
        attn = decoder.layers[0].self_attn
        config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(attn, "head_dim", None) or config.hidden_size // self.heads)
        self.scaling = float(getattr(attn, "scaling", self.head_dim**-0.5))
        self.num_layers = len(decoder.layers)
        head = inner.get_output_embeddings()
        self.vocab = int(head.weight.shape[0])
        self.embedding = inner.get_input_embeddings().weight
        self.device, self.dtype = self.embedding.device, self.embedding.dtype
        rotary = decoder.rotary_emb
        if 2 * rotary.inv_freq.numel() != self.head_dim:
            raise UnsupportedModelError(f"{type(inner).__name__}: partial rotary embeddings are not supported")
        self.inv_freq = rotary.inv_freq.float()
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        window = getattr(config, "sliding_window", None)
        self.sliding_window = int(window) if window and getattr(config, "use_sliding_window", True) else None
        started = time.perf_counter()
        onednn = _onednn_usable(self.device, self.dtype)
        if layout == "auto":
            layout = "prepacked" if onednn else "fused" if self.device.type == "cuda" else "shared"
        if layout not in WEIGHT_LAYOUTS:
            raise ValueError(f"weight_layout must be 'auto' or one of {', '.join(WEIGHT_LAYOUTS)}, got {layout!r}")
        if layout == "prepacked" and not onednn:
            raise ValueError(
                f"weight_layout='prepacked': oneDNN's prepacked linear is not available for {self.dtype} "
                f"on {self.device}"
            )
        self.layout = layout
        self.layers = [_layer_weights(layer, layout, onednn) for layer in decoder.layers]
        self.final_norm = (decoder.norm.weight, float(decoder.norm.variance_epsilon))
        self.head = _Linear([head], layout, onednn)
        self.weight_seconds = time.perf_counter() - started

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[n, V] float32 logits from [n, H] final-normed hidden states."""
        return self.head(hidden).float()

    def step(self, tokens: torch.Tensor, cache: _KVCache) -> torch.Tensor:
        """Feed one token per running row ([n]); returns [n, V] float32 logits of the next token."""
        n, col = tokens.shape[0], cache.length
        d, kvh = self.head_dim, self.kv_heads
        freqs = cache.positions[:n, None].float() * self.inv_freq[None]  # [n, d/2]
        angles = torch.cat((freqs, freqs), dim=-1)  # [n, d]
        cos = (angles.cos() * self.rope_scale).to(self.dtype)[:, None]  # [n, 1, d]
        sin = (angles.sin() * self.rope_scale).to(self.dtype)[:, None]
        valid = cache.valid[:n, None, None, : col + 1]  # [n, 1, 1, L+1]
        heads, split = self.heads, (self.heads + kvh) * d
        hidden = F.embedding(tokens, self.embedding)  # [n, H]
        for index, layer in enumerate(self.layers):
            x = _rms_norm(hidden, layer.input_norm, layer.eps)
            qkv = layer.qkv(x)  # [n, (heads + 2 kvh) d]
            if layer.qk_norms is None:  # rotate queries and keys together
                qk = _rotate(qkv[:, :split].view(n, heads + kvh, d), cos, sin)  # [n, heads + kvh, d]
                q, k = qk[:, :heads], qk[:, heads:]
            else:
                q_norm, k_norm = layer.qk_norms
                q = _rotate(_rms_norm(qkv[:, : heads * d].view(n, heads, d), *q_norm), cos, sin)
                k = _rotate(_rms_norm(qkv[:, heads * d : split].view(n, kvh, d), *k_norm), cos, sin)
            keys, values = cache.kv[index, 0, :n], cache.kv[index, 1, :n]  # [n, kvh, Lcap, d]
            keys[:, :, col] = k
            values[:, :, col] = qkv[:, split:].view(n, kvh, d)
            out = _attend(q, keys[:, :, : col + 1], values[:, :, : col + 1], valid, self.scaling)  # [n, heads, d]
            hidden = hidden + layer.o(out.reshape(n, heads * d))
            x = _rms_norm(hidden, layer.post_norm, layer.eps)
            gate, up = layer.gate_up(x).chunk(2, dim=-1)
            hidden = hidden + layer.down(layer.act(gate) * up)
        cache.advance()
        return self.logits(_rms_norm(hidden, *self.final_norm))


# --------------------------------------------------------------------------- the KV cache


def _legacy_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers cache: ``layers[i].keys`` (5.x), ``key_cache[i]`` (4.x), tuples."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]


class _KVCache:
    """Keys/values of the running rows in one pre-allocated buffer; finished rows leave by a swap with the tail.

    Slot s < ``running`` holds output row ``rows[s]``; column c holds the token at padded
    position c (prompt columns left-padded, ``valid`` is False on the padding).
    """

    def __init__(
        self,
        decoder: _Decoder,
        prefill: list[tuple[torch.Tensor, torch.Tensor]],
        prompt_mask: torch.Tensor,
        copies: int,
        max_new_tokens: int,
        positions: torch.Tensor,
    ):
        U, P = prompt_mask.shape
        N = U * copies
        capacity = P + max_new_tokens - 1
        self.kv = torch.empty(
            (decoder.num_layers, 2, N, decoder.kv_heads, capacity, decoder.head_dim),
            dtype=decoder.dtype,
            device=decoder.device,
        )  # [layers, 2, N, kvh, Lcap, d]
        pad = (prompt_mask == 0).repeat_interleave(copies, 0)  # [N, P]
        for index, (k, v) in enumerate(prefill):
            self.kv[index, 0, :, :, :P] = k.repeat_interleave(copies, 0)
            self.kv[index, 1, :, :, :P] = v.repeat_interleave(copies, 0)
        if bool(pad.any()):  # padding keys/values may be non-finite after a fully masked prefill row
            self.kv[:, :, :, :, :P].masked_fill_(pad[None, None, :, None, :, None], 0.0)
        self.valid = torch.ones((N, capacity), dtype=torch.bool, device=decoder.device)  # [N, Lcap] attendable
        self.valid[:, :P] = ~pad
        self.positions = positions.repeat_interleave(copies, 0).clone()  # [N] next rotary position
        self.rows = torch.arange(N, device=decoder.device)  # [N] output row per slot
        self.length = P
        self.running = N
        self.capacity = capacity

    def advance(self) -> None:
        self.length += 1
        self.positions[: self.running] += 1

    def keep(self, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the running slots where ``alive`` [running] is True, moving tail rows into the holes.

        Returns (holes, movers): the slots filled and the slots their rows came from.
        """
        n = int(alive.sum())
        holes = (~alive[:n]).nonzero()[:, 0]  # [m] dead slots below n
        movers = alive[n:].nonzero()[:, 0] + n  # [m] live slots at or above n
        if holes.numel():
            L = self.length
            self.kv[:, :, holes, :, :L] = self.kv[:, :, movers, :, :L]
            self.valid[holes] = self.valid[movers]
            self.positions[holes] = self.positions[movers]
            self.rows[holes] = self.rows[movers]
        self.running = n
        return holes, movers


# --------------------------------------------------------------------------- the token loop
class _DecodeState:
    """What the token loop produces: tokens and log-probs per output row, lengths, stop flags, counts."""

    def __init__(self, rows: int, settings: DecodeSpec, device: torch.device, with_log_probs: bool):
        self.settings = settings
        width = settings.max_new_tokens
        self.tokens = torch.full((rows, width), settings.pad_token_id, dtype=torch.long, device=device)  # [N, max_new]
        self.log_probs = torch.zeros((rows, width), dtype=torch.float32, device=device) if with_log_probs else None
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)  # [N]
        self.stopped = torch.zeros(rows, dtype=torch.bool, device=device)  # [N]
        self.stop_ids = torch.tensor(settings.stop_token_ids or [-1], device=device)
        self.inv_temperature = 1.0 / settings.temperature if settings.do_sample else 1.0
        self.step_rows: list[int] = []
        self.compactions = 0
        self.decode_started: float | None = None

    def record(self, logits: torch.Tensor, rows: torch.Tensor, uniforms: torch.Tensor | None) -> torch.Tensor:
        """Select the next tokens of ``rows`` from their [n, V] logits and store them; returns [n] tokens."""
        step = len(self.step_rows)
        if self.log_probs is not None:
            scaled = logits * self.inv_temperature  # [n, V]
            lse = torch.logsumexp(scaled, dim=-1)  # [n]
        tokens = select_tokens(logits, self.settings, uniforms)  # [n]
        self.tokens[rows, step] = tokens
        if self.log_probs is not None:
            self.log_probs[rows, step] = scaled.gather(1, tokens[:, None])[:, 0] - lse
        self.step_rows.append(int(rows.shape[0]))
        return tokens


def _decode(
    decoder: _Decoder, cache: _KVCache, logits: torch.Tensor, state: _DecodeState, generator: torch.Generator | None
) -> None:
    """Select, store, drop finished rows, step the running ones; until every row stopped or the budget is spent."""
    settings, max_new = state.settings, state.settings.max_new_tokens
    while True:
        n = cache.running
        uniforms = (
            torch.rand((n, 2), dtype=torch.float64, device=logits.device, generator=generator)
            if settings.do_sample
            else None
        )
        rows = cache.rows[:n]
        tokens = state.record(logits, rows, uniforms)  # [n]
        step = len(state.step_rows)
        ended = torch.isin(tokens, state.stop_ids)  # [n]
        if step == max_new:
            state.lengths[rows] = step
            state.stopped[rows] = ended
            return
        if bool(ended.any()):
            state.lengths[rows[ended]] = step
            state.stopped[rows[ended]] = True
            holes, movers = cache.keep(~ended)
            state.compactions += 1
            if cache.running == 0:
                return
            tokens[holes] = tokens[movers]
            tokens = tokens[: cache.running]
        if state.decode_started is None:
            state.decode_started = time.perf_counter()
        logits = decoder.step(tokens, cache)


# --------------------------------------------------------------------------- the engine


def supports_model(model: torch.nn.Module) -> str | None:
    """None when the fast engine can decode ``model``, else the reason it cannot."""
    inner = unwrap_model(model)
    try:
        _supported_decoder(inner)
    except UnsupportedModelError as exc:
        return str(exc)
    return None


def _check_prompts(input_ids: torch.Tensor, attention_mask: torch.Tensor, num_samples: int, vocab: int) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must be a [prompts, length] tensor, got {getattr(input_ids, 'shape', type(input_ids))}"
        )
    if input_ids.shape[0] == 0:
        raise ValueError("sample_completions: no prompts given (input_ids has 0 rows)")
    if input_ids.shape[1] == 0:
        raise ValueError("sample_completions: the prompts have no tokens (input_ids has 0 columns)")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} must have the shape of input_ids {tuple(input_ids.shape)}"
        )
    empty = (attention_mask.sum(-1) == 0).nonzero()
    if len(empty):
        raise ValueError(f"prompt {int(empty[0])}: no tokens (its attention mask is all 0)")
    if bool(attention_mask[:, -1].eq(0).any()):
        row = int(attention_mask[:, -1].eq(0).nonzero()[0])
        raise ValueError(f"prompt {row}: not left-padded (its last position is padding); pad prompts on the left")
    bad = ((input_ids < 0) | (input_ids >= vocab)) & attention_mask.bool()
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"prompt {row}, position {col}: token id {int(input_ids[row, col])} is outside the "
            f"model's vocabulary of {vocab}"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")


def _prefill(
    inner: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    model_inputs: Mapping[str, torch.Tensor],
) -> tuple[torch.Tensor, list, torch.Tensor]:
    """One body pass over the distinct prompts: ([U, H] last hidden states, per-layer (keys, values), [U] delta).

    The delta is the multimodal-RoPE offset a VLM stores in ``rope_deltas`` (0 for text):
    the next rotary position of row u is its prompt length + delta[u].
    """
    body = inner.base_model
    holder = next(
        (m for m in (body, getattr(body, "model", None)) if m is not None and hasattr(m, "rope_deltas")), None
    )
    saved = holder.rope_deltas if holder is not None else None
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": True}
    if not any(k in model_inputs for k in _VISION_KEYS):  # else the model computes its multimodal positions
        kwargs["position_ids"] = position_ids_from_mask(attention_mask)
    kwargs.update(model_inputs)
    try:
        if holder is not None:
            holder.rope_deltas = None
        out = body(**kwargs)
        delta = holder.rope_deltas if holder is not None else None
    finally:
        if holder is not None:
            holder.rope_deltas = saved
    cache = getattr(out, cache_argument(inner), None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    delta = (
        torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        if delta is None
        else delta.reshape(-1).to(input_ids.device).long()
    )
    return out.last_hidden_state[:, -1], _legacy_layers(cache), delta


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: DecodeSpec,
    *,
    num_samples: int = 1,
    model_inputs: Mapping[str, torch.Tensor] | None = None,
    token_inputs: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    with_log_probs: bool = False,
    weight_layout: str = "auto",
) -> Completions:
    """``num_samples`` completions of each prompt, decoding only the rows still running.

    Args:
        model: a causal LM of :data:`SUPPORTED_MODEL_TYPES` (optionally PEFT-wrapped
            without adapters on the projections); put in eval mode for the call.
        input_ids: [B, P] distinct prompts, left-padded.
        attention_mask: [B, P] 1 on prompt tokens.
        settings: token selection (the :class:`~apmpo.sampling.settings.Sampling` settings) and stop conditions.
        num_samples: G, completions per prompt (rows [i*G, (i+1)*G) belong to prompt i).
        model_inputs: extra inputs of the B prompts for the prefill, collated along dim 0
            (``pixel_values``, ``image_grid_thw``).
        token_inputs: per-token inputs aligned with ``input_ids`` ([B, P], e.g.
            ``mm_token_type_ids``), passed to the prefill with the prompt tokens.
        generator: the RNG of the uniforms (None: torch's default RNG of the device).
        with_log_probs: also return each sampled token's log-probability (one extra
            log-sum-exp over the vocabulary per step).
        weight_layout: one of :data:`WEIGHT_LAYOUTS`, or "auto": ``prepacked`` where oneDNN
            runs (CPU), ``fused`` on CUDA, else ``shared``.

    Returns:
        :class:`Completions`; the same seed, inputs and settings give the same completions.
    """
    if not isinstance(settings, DecodeSpec):
        raise TypeError(f"settings must be a DecodeSpec, got {type(settings).__name__}")
    started = time.perf_counter()
    inner: Any = unwrap_model(model)
    head = inner.get_output_embeddings()
    _check_prompts(input_ids, attention_mask, num_samples, int(head.weight.shape[0]) if head is not None else 0)
    for name, values in (token_inputs or {}).items():
        if values.shape != input_ids.shape:
            raise ValueError(
                f"token_inputs[{name!r}] {tuple(values.shape)} must have the shape of input_ids "
                f"{tuple(input_ids.shape)}"
            )
    decoder = _Decoder(inner, weight_layout)
    device = decoder.device
    first = int(attention_mask.any(0).nonzero()[0])  # drop shared left padding
    ids, mask = input_ids[:, first:].to(device), attention_mask[:, first:].to(device)
    extra = {k: v.to(device) for k, v in (model_inputs or {}).items()}
    extra.update({k: v[:, first:].to(device) for k, v in (token_inputs or {}).items()})
    G, N, max_new = num_samples, ids.shape[0] * num_samples, settings.max_new_tokens
    if decoder.sliding_window is not None and ids.shape[1] + max_new > decoder.sliding_window:
        raise UnsupportedModelError(
            f"sliding window {decoder.sliding_window} is shorter than prompt + completion "
            f"({ids.shape[1] + max_new} tokens)"
        )
    was_training = model.training
    model.eval()
    try:
        t0 = time.perf_counter()
        last_hidden, prefill_kv, delta = _prefill(inner, ids, mask.long(), extra)
        logits = decoder.logits(last_hidden).repeat_interleave(G, 0)  # [N, V]
        cache = _KVCache(decoder, prefill_kv, mask, G, max_new, mask.sum(-1) + delta)
        del prefill_kv
        state = _DecodeState(N, settings, device, with_log_probs)
        _decode(decoder, cache, logits, state, generator)
    finally:
        model.train(was_training)
    ended = time.perf_counter()
    lengths, stopped = state.lengths, state.stopped
    T = int(lengths.max())
    completion_ids = state.tokens[:, :T].clone()  # [N, T]
    completion_mask = torch.arange(T, device=device)[None] < lengths[:, None]  # [N, T]
    decode_started = state.decode_started or ended
    return Completions(
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        lengths=lengths,
        truncated=~stopped,
        finish_reasons=["stop" if s else "length" for s in stopped.tolist()],
        prompt_index=torch.arange(ids.shape[0], device=device).repeat_interleave(G),
        log_probs=state.log_probs[:, :T] * completion_mask if state.log_probs is not None else None,
        stats={
            "generated_tokens": int(lengths.sum()),
            "row_steps": sum(state.step_rows),
            "decode_steps": len(state.step_rows) - 1,
            "step_rows": state.step_rows,
            "prompt_width": ids.shape[1],
            "prefill_seconds": decode_started - t0,
            "decode_seconds": ended - decode_started,
            "generation_seconds": ended - started,
            "weight_seconds": decoder.weight_seconds,
            "compactions": state.compactions,
            "weight_layout": decoder.layout,
        },
    )

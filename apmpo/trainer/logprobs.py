"""Per-token log-probabilities of completions, without the [batch, length, vocab] logits.

RL fine-tuning needs log pi(o_t | q, o_<t) only at the completion tokens, yet a causal
LM's forward pass returns fp32-castable logits for every position: B x L x V floats
(for a 150k vocabulary that is gigabytes per micro-batch). ``completion_log_probs``
instead

1. runs the model's body (``model.base_model``: decoder layers and final norm, the
   vision tower too for a vision-language model) to get hidden states [B, L, H];
2. keeps the hidden states that predict a completion token (position t predicts
   token t + 1) and only those of real tokens: [n, H], n = number of completion tokens;
3. applies the LM head chunk by chunk (``chunk_size`` tokens at a time) and takes
   log_softmax in fp32 per chunk, returning log pi of the sampled token and, if asked,
   the entropy of the distribution at that position.

The memory of step 3 is chunk_size x V floats, forward and backward: the chunk's
logits are not kept for the backward pass but recomputed from the saved hidden states
(``_ChunkedLMHead``, a custom autograd function: one extra chunk matmul, the cost of
an activation-checkpointed LM head). ``recompute_logits=False`` keeps the
probabilities instead (faster, n x V floats of memory).

Logits are divided by ``temperature`` so that log-probs are those of the distribution
the rollout sampled from (as TRL and verl do); top-p / top-k truncation is not
reflected (also as they do). Position ids are computed from the attention mask like
``generate`` does for left-padded prompts, so the forward pass sees each token at the
position it was sampled at; extra model inputs (``pixel_values``, ``image_grid_thw``,
...) pass through ``**model_inputs`` to the body (then the model computes its own
position ids, e.g. Qwen2-VL's multimodal rotary positions).

``share_prompt=True`` runs each distinct prompt of the batch through the body once
(with a KV cache, gradients flowing through it) and then only the completions, attending
to their prompt's cached keys/values: the G samples of a group share one prompt pass
instead of G, forward and backward. Exact up to float rounding (same attention, same
positions); used for text-only inputs, without gradient checkpointing (which turns the
cache off), and only when some prompt repeats in the batch.

A model whose output layer is not a plain ``nn.Linear`` (a LoRA-wrapped head, logit
soft-capping) takes the general path: the same chunking with the head module applied
under activation checkpointing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from apmpo.models.forward import cache_argument, position_ids_from_mask, unwrap_model

__all__ = ["TokenLogProbs", "completion_log_probs", "prompt_groups"]


class TokenLogProbs(NamedTuple):
    """Output of :func:`completion_log_probs`."""

    log_probs: torch.Tensor
    """[B, T] float32 (float64 for a float64 model) log pi of each completion token; 0 where the completion mask is 0."""
    entropy: torch.Tensor | None
    """[B, T] float32 entropy of the next-token distribution (no gradient), or None."""
    body_tokens: int = 0
    """Positions the model body processed (padding included): B x (P + T), or U x P + B x T with a shared prompt pass."""


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, inverse): rows with identical prompts (tokens and padding) share one index.

    ``first`` [U] is a row holding each distinct prompt, ``inverse`` [B] the distinct
    prompt of each row, so ``prompt_ids[first][inverse] == prompt_ids``.
    """
    key = prompt_ids.masked_fill(prompt_mask == 0, -1)  # [B, P]
    _, inverse = torch.unique(key, dim=0, return_inverse=True)  # [B] in 0..U-1
    B = inverse.shape[0]
    first = torch.full((int(inverse.max()) + 1 if B else 0,), B, dtype=torch.long, device=inverse.device)
    first = first.scatter_reduce(0, inverse, torch.arange(B, device=inverse.device), reduce="amin")  # [U]
    return first, inverse


def _shared_prompt_hidden(
    body: torch.nn.Module,
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    comp_mask: torch.Tensor,
    first: torch.Tensor,
    inverse: torch.Tensor,
) -> torch.Tensor:
    """[B, T, H] hidden states predicting each completion token, with one body pass per distinct prompt."""
    P = prompt_ids.shape[1]
    u_mask = prompt_mask[first].long()  # [U, P]
    cache_name = cache_argument(model)
    out = body(
        input_ids=prompt_ids[first], attention_mask=u_mask, position_ids=position_ids_from_mask(u_mask), use_cache=True
    )
    hidden_p = out.last_hidden_state  # [U, P, H]
    cache = getattr(out, cache_name)
    cache.batch_select_indices(inverse)  # [U, ...] -> [B, ...] keys/values
    attention_mask = torch.cat([prompt_mask.long(), comp_mask.long()], dim=1)  # [B, P+T]
    positions = position_ids_from_mask(attention_mask)[:, P:]  # [B, T]
    out = body(
        input_ids=completion_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        **{cache_name: cache},
    )
    hidden_c = out.last_hidden_state  # [B, T, H]
    # token t is predicted at position P-1+t: the prompt's last position for t = 0, else completion position t-1
    return torch.cat([hidden_p[inverse, P - 1 :], hidden_c[:, :-1]], dim=1)  # [B, T, H]


class _ChunkedLMHead(torch.autograd.Function):
    """log softmax(h W^T + b)[target] / entropy over chunks of rows, recomputing in backward.

    d log p_y / d z = onehot(y) - softmax(z) for logits z; times 1/temperature for z = a / T.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, inv_temperature, with_entropy, recompute):
        n = hidden.shape[0]
        dtype = _compute_dtype(weight)
        log_probs = torch.empty(n, dtype=dtype, device=hidden.device)  # [n]
        entropy = torch.empty(n, dtype=dtype, device=hidden.device) if with_entropy else None
        keep_probs = not recompute and any(ctx.needs_input_grad[:3])
        saved_probs = []
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            logits = F.linear(hidden[start:stop], weight, bias).to(dtype)  # [c, V]
            if inv_temperature != 1.0:
                logits.mul_(inv_temperature)
            lse = torch.logsumexp(logits, dim=-1)  # [c]
            log_probs[start:stop] = logits.gather(1, targets[start:stop, None])[:, 0] - lse
            if with_entropy or keep_probs:
                probs = torch.softmax(logits, dim=-1)  # [c, V]
                if with_entropy:
                    entropy[start:stop] = lse - (probs * logits).sum(-1)
                if keep_probs:
                    saved_probs.append(probs)
        ctx.save_for_backward(hidden, weight, bias if bias is not None else torch.empty(0), targets)
        ctx.has_bias = bias is not None
        ctx.chunk_size, ctx.inv_temperature = chunk_size, inv_temperature
        ctx.saved_probs = saved_probs
        if entropy is not None:
            ctx.mark_non_differentiable(entropy)
        return log_probs, entropy

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy):
        hidden, weight, bias, targets = ctx.saved_tensors
        bias = bias if ctx.has_bias else None
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_hidden = torch.zeros_like(hidden) if need_h else None
        dtype = _compute_dtype(weight)
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_w else None
        grad_bias = (
            torch.zeros(weight.shape[0], dtype=dtype, device=weight.device) if (need_b and bias is not None) else None
        )
        n, c = hidden.shape[0], ctx.chunk_size
        for index, start in enumerate(range(0, n, c)):
            stop = min(start + c, n)
            if ctx.saved_probs:
                probs = ctx.saved_probs[index]
            else:
                logits = F.linear(hidden[start:stop], weight, bias).to(dtype)  # [c, V]
                if ctx.inv_temperature != 1.0:
                    logits.mul_(ctx.inv_temperature)
                probs = torch.softmax(logits, dim=-1)  # [c, V]
            g = grad_log_probs[start:stop].to(dtype)  # [c]
            grad_logits = probs * (-g[:, None])  # [c, V]
            grad_logits.scatter_add_(1, targets[start:stop, None], g[:, None])
            if ctx.inv_temperature != 1.0:
                grad_logits.mul_(ctx.inv_temperature)
            if need_h:
                grad_hidden[start:stop] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_weight.addmm_(grad_logits.t(), hidden[start:stop].to(dtype))
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
        ctx.saved_probs = []
        grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
        grad_bias = grad_bias.to(bias.dtype) if grad_bias is not None else None
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 for float64 weights (exact references, gradcheck), else float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _head_chunk_general(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, inv_temperature: float, softcap: float | None
) -> torch.Tensor:
    logits = head(hidden)  # [c, V]
    logits = logits.to(_compute_dtype(logits))
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logits = logits * inv_temperature
    return logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)


def _entropy_chunk_general(head, hidden, inv_temperature, softcap):
    logits = head(hidden)
    logits = logits.to(_compute_dtype(logits))
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logits = logits * inv_temperature
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def completion_log_probs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    recompute_logits: bool = True,
    share_prompt: bool = False,
    **model_inputs: Any,
) -> TokenLogProbs:
    """log pi(o_t | q, o_<t) at every completion token, computed chunk by chunk.

    Args:
        model: a transformers causal LM (optionally PEFT-wrapped); gradients flow when
            called with grad enabled.
        prompt_ids: [B, P] left-padded prompt tokens.
        prompt_mask: [B, P] 1 on prompt tokens, 0 on left padding.
        completion_ids: [B, T] completion tokens, right-padded.
        completion_mask: [B, T] 1 on the tokens to score (up to and including EOS).
        temperature: logits are divided by it (use the sampling temperature).
        chunk_size: completion tokens per LM-head chunk (memory: chunk_size x vocab fp32).
        with_entropy: also return the per-token entropy (computed from the same chunks).
        recompute_logits: recompute each chunk's logits in backward (bounded memory)
            rather than keeping its probabilities.
        share_prompt: one body pass per distinct prompt, its KV cache shared by the rows
            that repeat it (text-only inputs; ignored where it does not apply).
        **model_inputs: extra inputs for the model body (pixel_values, image_grid_thw, ...).

    Returns:
        TokenLogProbs(log_probs [B, T] float32, entropy [B, T] float32 or None), zero at
        masked positions.
    """
    if prompt_ids.dim() != 2 or completion_ids.dim() != 2:
        raise ValueError(
            f"prompt_ids and completion_ids must be [B, L]; got {tuple(prompt_ids.shape)} and {tuple(completion_ids.shape)}"
        )
    if prompt_ids.shape != prompt_mask.shape or completion_ids.shape != completion_mask.shape:
        raise ValueError("prompt_mask / completion_mask must have the shapes of prompt_ids / completion_ids")
    if prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(f"batch sizes differ: {prompt_ids.shape[0]} prompts, {completion_ids.shape[0]} completions")
    if prompt_ids.shape[1] < 1:
        raise ValueError("prompt_ids: every sequence needs at least one prompt position")
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")

    inner = unwrap_model(model)
    body = inner.base_model
    head = inner.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(inner).__name__} has no output embeddings (LM head)")
    softcap = getattr(getattr(inner, "config", None), "final_logit_softcapping", None)

    P, T = prompt_ids.shape[1], completion_ids.shape[1]
    comp_mask = completion_mask.bool()
    first = inverse = None
    checkpointing = getattr(inner, "is_activation_checkpointing", None)  # transformers >= 5.x; older: is_gradient_...
    checkpointing = checkpointing if checkpointing is not None else getattr(inner, "is_gradient_checkpointing", False)
    if share_prompt and not model_inputs and T > 0 and not checkpointing:
        first, inverse = prompt_groups(prompt_ids, prompt_mask)
        if first.shape[0] == prompt_ids.shape[0]:  # no prompt repeats: nothing to share
            first = inverse = None
    if first is not None and inverse is not None:
        hidden = _shared_prompt_hidden(body, model, prompt_ids, prompt_mask, completion_ids, comp_mask, first, inverse)
        body_tokens = first.shape[0] * P + completion_ids.numel()
    else:
        body_tokens = prompt_ids.numel() + completion_ids.numel()
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
        attention_mask = torch.cat([prompt_mask.long(), comp_mask.long()], dim=1)  # [B, P+T]
        if "position_ids" not in model_inputs and "pixel_values" not in model_inputs:
            model_inputs["position_ids"] = position_ids_from_mask(attention_mask)
        outputs = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **model_inputs)
        hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]  # [B, P+T, H]
        hidden = hidden[:, P - 1 : P - 1 + T]  # [B, T, H] predicts completion
    rows, cols = comp_mask.nonzero(as_tuple=True)  # n completion tokens
    h = hidden[rows, cols]  # [n, H]
    targets = completion_ids[rows, cols]  # [n]
    inv_t = 1.0 / float(temperature)

    plain_head = type(head) is torch.nn.Linear and not softcap
    if plain_head:
        token_lp, token_ent = _ChunkedLMHead.apply(
            h, head.weight, head.bias, targets, int(chunk_size), inv_t, bool(with_entropy), bool(recompute_logits)
        )
    else:
        parts, ent_parts = [], []
        for start in range(0, h.shape[0], chunk_size):
            h_c, t_c = h[start : start + chunk_size], targets[start : start + chunk_size]
            if torch.is_grad_enabled():
                parts.append(checkpoint(_head_chunk_general, head, h_c, t_c, inv_t, softcap, use_reentrant=False))
            else:
                parts.append(_head_chunk_general(head, h_c, t_c, inv_t, softcap))
            if with_entropy:
                with torch.no_grad():
                    ent_parts.append(_entropy_chunk_general(head, h_c.detach(), inv_t, softcap))
        empty = h.new_zeros(0, dtype=_compute_dtype(h))
        token_lp = torch.cat(parts) if parts else empty
        token_ent = (torch.cat(ent_parts) if ent_parts else empty) if with_entropy else None

    log_probs = torch.zeros(comp_mask.shape, dtype=token_lp.dtype, device=h.device)  # [B, T]
    log_probs = log_probs.index_put((rows, cols), token_lp)
    entropy = None
    if token_ent is not None:
        entropy = torch.zeros(comp_mask.shape, dtype=token_ent.dtype, device=h.device)
        entropy[rows, cols] = token_ent.detach()
    return TokenLogProbs(log_probs, entropy, body_tokens)

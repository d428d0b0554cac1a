"""The sampling settings, declared once: how completions are drawn, for the training rollout and evaluation.

:class:`Sampling` holds the settings every sampler takes (temperature, top-p, top-k, the
length limits) and which sampler draws them (``engine``: the fast sampling engine of
:mod:`apmpo.sampling.engine` or transformers' ``generate``), each with its constraint
and documentation. The engine's per-call specification
(:class:`apmpo.sampling.engine.DecodeSpec`) is these settings plus the model's token
ids; ``generate`` gets them through :meth:`Sampling.generation_kwargs`. The trainer's
``rollout:`` section (:class:`apmpo.trainer.config.RolloutConfig`) and the evaluation
settings (:class:`apmpo.eval.harness.EvalSettings`) extend it; they may change a
default (evaluation decodes greedily by default), never the meaning or the range.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from apmpo.settings import Settings

__all__ = ["ENGINES", "Engine", "MaxNewTokens", "MaxPromptTokens", "Sampling", "Temperature", "TopK", "TopP"]

Temperature = Annotated[float, Field(ge=0)]
"""Sampling temperature; 0 is greedy decoding."""
TopP = Annotated[float, Field(gt=0, le=1)]
"""Nucleus sampling threshold in (0, 1]."""
TopK = Annotated[int, Field(ge=0)]
"""Top-k sampling; 0 disables it."""
MaxNewTokens = Annotated[int, Field(ge=1)]
"""The longest completion in tokens."""
MaxPromptTokens = Annotated[int, Field(ge=1)] | None
"""The longest prompt in tokens (None: no limit)."""
Engine = Literal["fast", "hf"]
"""Which sampler draws the completions: the fast sampling engine or transformers' ``generate``."""
ENGINES: tuple[str, ...] = get_args(Engine)
"""The values of :data:`Engine`."""


class Sampling(Settings):
    """How completions are drawn (the fast sampling engine or transformers generate; KV cache, left padding)."""

    engine: Engine = "fast"
    """fast: the sampling engine (apmpo.sampling.engine: shared prompt prefill, finished rows leave the batch, its
    own decode step for Llama-family models); models it cannot decode (LoRA/PEFT projections, other architectures)
    fall back to hf, said once at start-up. hf: transformers generate."""

    max_new_tokens: MaxNewTokens = 64
    """L_max: the longest completion; a completion that reaches it without EOS is truncated."""
    max_prompt_tokens: MaxPromptTokens = None
    """Refuse prompts longer than this many tokens (None: no limit)."""
    temperature: Temperature = 1.0
    """Sampling temperature (0: greedy decoding). Log-probs are computed at the same temperature."""
    top_p: TopP = 1.0
    """Nucleus sampling threshold in (0, 1] (sampling only)."""
    top_k: TopK = 0
    """Top-k sampling; 0 disables it (sampling only)."""

    @property
    def greedy(self) -> bool:
        """True for greedy decoding (temperature 0)."""
        return self.temperature == 0

    def generation_kwargs(self) -> dict[str, Any]:
        """The ``transformers.GenerationConfig`` arguments these settings fix (the hf engine's sampling settings)."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": not self.greedy}
        if not self.greedy:
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p), top_k=int(self.top_k))
        return kwargs

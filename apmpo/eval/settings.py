"""The evaluation settings: the sampling settings shared with the trainer, plus what to report.

Given by ``apmpo eval`` flags, a suite's ``generation:`` section, or in code; checked
like every other setting of the package (:mod:`apmpo.settings`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from apmpo.sampling.settings import MaxNewTokens, Sampling, Temperature

__all__ = ["EvalSettings", "KList"]


def _k_list(value: Any) -> Any:
    """k values as given: a list, one integer, or a comma-separated string ("1,4")."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return value


KList = Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_k_list)]
"""A list of k values, each >= 1 (a comma-separated string is accepted); duplicates are dropped, order sorted."""


class EvalSettings(Sampling):
    """How to sample and what to report (the sampling settings shared with the trainer, and the metrics)."""

    temperature: Temperature = 0.0
    """0: greedy decoding (needs n = 1); > 0: sampling at this temperature."""
    max_new_tokens: MaxNewTokens = 1024
    """Longest completion; one that reaches it without EOS is marked truncated."""
    n: Annotated[int, Field(ge=1)] = 1
    """Samples per example (Pass@1 is their mean correctness)."""
    k: KList = Field(default_factory=lambda: [1], min_length=1)
    """pass@k is reported for each k (each <= n); a comma-separated string is accepted."""
    maj_k: KList | None = Field(None, validate_default=True)
    """maj@k is reported for each (each <= n); None: the k values above 1."""
    batch_size: Annotated[int, Field(ge=1)] = 16
    """Samples (prompt rows) per sampling call."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Base seed; each batch is sampled under a seed derived from (seed, benchmark, batch)."""
    limit: Annotated[int, Field(ge=1)] | None = None
    """Evaluate only the first N examples of each benchmark (None: all)."""
    correct_threshold: float = 1.0
    """A sample is correct when its reward score is >= this (finite)."""

    @field_validator("k")
    @classmethod
    def _distinct_sorted(cls, values: list[int]) -> list[int]:
        return sorted(dict.fromkeys(values))

    @field_validator("maj_k")
    @classmethod
    def _majority_ks(cls, values: list[int] | None, info: Any) -> list[int]:
        if values is None:
            return [k for k in info.data.get("k", []) if k > 1]
        return sorted(dict.fromkeys(values))

    @model_validator(mode="after")
    def _consistent(self) -> EvalSettings:
        problems = []
        too_big = [k for k in [*self.k, *(self.maj_k or [])] if k > self.n]
        if too_big:
            problems.append(f"k: k = {max(too_big)} needs at least that many samples per example, but n = {self.n}")
        if self.greedy and self.n > 1:
            problems.append(
                f"temperature: 0 is greedy decoding, which gives {self.n} identical samples; "
                "use n = 1 or a temperature > 0"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def generation_fingerprint(self) -> dict[str, Any]:
        """The settings that determine the samples (compared on resume)."""
        return {
            "temperature": float(self.temperature),
            "top_p": float(self.top_p) if not self.greedy else None,
            "top_k": int(self.top_k) if not self.greedy else None,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }

"""One aggregation helper for every objective and for the KL term.

Two modes, chosen by the objective (its ``LossSpec.aggregation``):

- "response": each response contributes one number (a token mean, a power mean, a
  sequence-level surrogate); the objective is their sum divided by the number of
  responses that have at least one response token (GRPO, APMPO, PMPO, GMPO, GSPO).
- "token": every response token contributes one number; the sum is divided by the
  number of response tokens in the batch (DAPO's token-level aggregation).

``normalizer`` replaces that divisor. Passing the WHOLE batch's count (responses or
tokens) to every micro-batch makes the sum of micro-batch losses equal the full-batch
loss, so gradient accumulation reproduces the full-batch gradient exactly -- the
property verl's geo_mean loss lacked (verl issue 7913).
"""

from __future__ import annotations

import torch

__all__ = ["AGGREGATIONS", "masked_row_mean", "aggregate_rows", "aggregate_tokens", "default_normalizer"]

AGGREGATIONS = ("response", "token")


def masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, T] -> [N]: mean over the valid tokens of each row (0 for a row with none)."""
    counts = mask.sum(-1)  # [N]
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype)).sum(-1)  # [N]
    return total / counts.clamp(min=1).to(values.dtype)


def default_normalizer(mask: torch.Tensor, aggregation: str) -> int:
    """The divisor used when none is given: responses with a token, or tokens."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation: unknown mode {aggregation!r}; known: {', '.join(AGGREGATIONS)}")
    if aggregation == "response":
        return int(mask.any(-1).sum())
    return int(mask.sum())


def _divisor(normalizer: float | None, mask: torch.Tensor, aggregation: str) -> float:
    if normalizer is None:
        return float(max(default_normalizer(mask, aggregation), 1))
    if isinstance(normalizer, torch.Tensor):
        normalizer = normalizer.item()
    if not float(normalizer) > 0:
        raise ValueError(f"normalizer: must be > 0, got {normalizer}")
    return float(normalizer)


def aggregate_rows(row_values: torch.Tensor, mask: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Response-level aggregation: sum of [N] per-response values over rows with a token, / divisor."""
    has_tokens = mask.any(-1)  # [N]
    total = torch.where(has_tokens, row_values, torch.zeros((), dtype=row_values.dtype)).sum()
    return total / _divisor(normalizer, mask, "response")


def aggregate_tokens(
    values: torch.Tensor, mask: torch.Tensor, aggregation: str, normalizer: float | None = None
) -> torch.Tensor:
    """Aggregate [N, T] token values: token-mean per response then ``aggregate_rows`` ("response"),
    or the sum over all valid tokens / divisor ("token")."""
    if aggregation == "response":
        return aggregate_rows(masked_row_mean(values, mask), mask, normalizer)
    divisor = _divisor(normalizer, mask, aggregation)
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype)).sum() / divisor

"""Input validation shared by the core functions.

Every check raises ``ValueError`` naming the argument and the problem, so a user who
passes a wrongly shaped or non-finite tensor learns which one and why.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "compute_dtype",
    "check_mask",
    "check_finite_where",
    "check_same_shape",
    "check_rank",
    "check_range",
    "to_float",
]


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64 (gradcheck, references), else float32.

    Half-precision inputs (bf16/fp16) are always computed in float32.
    """
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_rank(name: str, t: Any, rank: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(f"{name}: expected {rank} dimensions, got shape {tuple(t.shape)}")


def check_same_shape(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.shape != ref.shape:
        raise ValueError(f"{name}: shape {tuple(t.shape)} does not match {ref_name}'s shape {tuple(ref.shape)}")


def check_mask(name: str, mask: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` as bool; it must hold only 0 and 1."""
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            raise ValueError(f"{name}: must contain only 0 and 1 (1 marks a response token)")
        return mask != 0
    raise ValueError(f"{name}: unsupported dtype {mask.dtype}")


def check_finite_where(name: str, t: torch.Tensor, where: torch.Tensor | None = None) -> None:
    """Raise if ``t`` holds NaN or inf where ``where`` is true (everywhere if None)."""
    bad = ~torch.isfinite(t)
    if where is not None:
        bad = bad & where
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"{name}: contains NaN or inf (first at index {idx})")


def to_float(name: str, value: Any) -> float:
    """A python float from a number or a one-element tensor, with a clear error."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: expected a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name}: must be finite, got {out}")
    return out


def check_range(
    name: str,
    value: float | torch.Tensor,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise unless low <= value <= high (strictness per flag) for a float or every tensor element."""
    t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: must be finite, got {value}")
    if low is not None:
        ok = (t >= low) if low_inclusive else (t > low)
        if not bool(ok.all()):
            rel = ">=" if low_inclusive else ">"
            raise ValueError(f"{name}: must be {rel} {low}, got {_show(value)}")
    if high is not None:
        ok = (t <= high) if high_inclusive else (t < high)
        if not bool(ok.all()):
            rel = "<=" if high_inclusive else "<"
            raise ValueError(f"{name}: must be {rel} {high}, got {_show(value)}")


def _show(value: float | torch.Tensor) -> str:
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        return f"values in [{value.min().item():.6g}, {value.max().item():.6g}]"
    return f"{float(value):.6g}"

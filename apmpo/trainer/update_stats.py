"""Per-step statistics of the optimizer updates: gradient norms and the spread of the mini-batch gradients.

A rollout batch is trained with U = epochs x mini_batches optimizer updates
(:func:`apmpo.trainer.step.update`). Update u uses the gradient g_u of its mini-batch's
loss (accumulated over its micro-batches), taken at that update's parameters theta_u,
before norm clipping; :func:`apmpo.trainer.step.optimizer_step` hands it to
:meth:`UpdateStatistics.add` before it clips, and logs ||g_u|| as the update's
``grad_norm`` (the step's ``grad_norm`` is their mean). Per step,
:meth:`UpdateStatistics.summary` reports

- ``grad_norm_max`` = max_u ||g_u||;
- ``grad_var`` = (1/U) sum_u ||g_u - gbar||^2 with gbar = (1/U) sum_u g_u: the mean
  squared distance of the step's mini-batch gradients from their mean, computed as
  (1/U) sum_u ||g_u||^2 - ||gbar||^2;
- ``grad_var_ratio`` = grad_var / ((1/U) sum_u ||g_u||^2), in [0, 1]: the share of the
  gradients' energy that differs between the step's mini-batches (0: every update
  pushed the same way; near 1: they mostly cancel). Scale-free, so arms whose losses
  are normalised differently (DAPO's token-level sum) compare.

These are the quantities behind the paper's mechanism claims (the power mean and FAC
shape how strongly and how consistently each update pushes). The gradients of one
step are taken at successive parameters theta_1 .. theta_U, so grad_var measures the
spread along the step's trajectory, not the sampling variance at one point.

Cost: exact, on the full gradient vector, no projection: one running sum of the
gradients (one extra gradient-sized buffer, allocated at the first update, only with
U > 1 and ``logging.grad_variance``) plus one in-place add per update; the norms are the
ones the clipping computes anyway. ``logging.grad_variance=false`` skips the buffer
(e.g. a large model short of accelerator memory); grad_norm and grad_norm_max stay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["UpdateStatistics"]


class UpdateStatistics:
    """The running sum of one step's update gradients (before clipping) and the step's summary.

    Args:
        parameters: the trainable parameters (those the optimizer updates).
        updates: U, the number of optimizer updates the step will make.
        variance: keep the running sum of the gradients for ``grad_var`` (only with U > 1).
    """

    def __init__(self, parameters: Sequence[torch.nn.Parameter], updates: int, variance: bool = True):
        self.parameters = list(parameters)
        self.track_variance = variance and updates > 1
        self._sum: list[torch.Tensor] | None = None

    def add(self) -> None:
        """Add the parameters' current gradients (a missing one counts as zero) to the running sum."""
        if not self.track_variance:
            return
        grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in self.parameters]
        if self._sum is None:
            self._sum = [g.clone() for g in grads]
            return
        for total, grad in zip(self._sum, grads):
            total.add_(grad)

    def summary(self, norms: Sequence[float]) -> dict[str, float]:
        """grad_norm_max from the updates' norms ||g_u|| before clipping, and with a tracked variance grad_var and
        grad_var_ratio (empty without any update)."""
        if not norms:
            return {}
        out = {"grad_norm_max": max(norms)}
        if self._sum is not None and len(norms) > 1:
            count = len(norms)
            mean_square = math.fsum(n * n for n in norms) / count  # (1/U) sum ||g_u||^2
            total = math.fsum(float(torch.linalg.vector_norm(s, dtype=torch.float64)) ** 2 for s in self._sum)
            variance = max(mean_square - total / count**2, 0.0)  # - ||gbar||^2
            out["grad_var"] = variance
            out["grad_var_ratio"] = variance / mean_square if mean_square > 0 else 0.0
        return out

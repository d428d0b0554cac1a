"""Per-step statistics of the optimizer updates: gradient norms and the spread of the mini-batch gradients.

A rollout batch is trained with U = epochs x mini_batches optimizer updates (the
loop's step 7). Update u uses the gradient g_u of its mini-batch's loss (accumulated
over its micro-batches), taken at that update's parameters theta_u, before norm
clipping. Per step, :class:`UpdateStatistics` reports

- ``grad_norm_max`` = max_u ||g_u|| (the loop logs the mean, ``grad_norm``, itself);
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
U > 1 and ``variance``) plus one in-place add per update; the norms are the ones the
clipping computes anyway. ``logging.grad_variance=false`` skips the buffer (e.g. a
large model short of accelerator memory); grad_norm and grad_norm_max stay.
"""

from __future__ import annotations

import math

import torch

__all__ = ["UpdateStatistics"]


class UpdateStatistics:
    """Records each update's gradient of one step (before clipping) and summarises them.

    Args:
        parameters: the trainable parameters (those the optimizer updates).
        updates: U, the number of optimizer updates the step will make.
        variance: track the running sum of the gradients for ``grad_var`` (needs U > 1).
    """

    def __init__(self, parameters: list[torch.nn.Parameter], updates: int, variance: bool = True):
        self.parameters = list(parameters)
        self.track_variance = variance and updates > 1
        self.norms: list[float] = []
        self._sum: list[torch.Tensor] | None = None

    def clip_and_record(self, max_norm: float) -> float:
        """Record the current gradients, then clip their total norm to ``max_norm`` (<= 0: no clipping).

        Returns the total gradient norm before clipping (what ``clip_grad_norm_`` returns).
        """
        if self.track_variance:
            grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in self.parameters]
            if self._sum is None:
                self._sum = [g.clone() for g in grads]
            else:
                for total, grad in zip(self._sum, grads):
                    total.add_(grad)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, max_norm if max_norm > 0 else math.inf)
        self.norms.append(float(norm))
        return self.norms[-1]

    def summary(self) -> dict[str, float]:
        """grad_norm_max, and with a tracked variance grad_var and grad_var_ratio (empty before any update)."""
        if not self.norms:
            return {}
        out = {"grad_norm_max": max(self.norms)}
        if self._sum is not None and len(self.norms) > 1:
            count = len(self.norms)
            mean_square = math.fsum(n * n for n in self.norms) / count  # (1/U) sum ||g_u||^2
            total = math.fsum(float(torch.linalg.vector_norm(s, dtype=torch.float64)) ** 2 for s in self._sum)
            variance = max(mean_square - total / count**2, 0.0)  # - ||gbar||^2
            out["grad_var"] = variance
            out["grad_var_ratio"] = variance / mean_square if mean_square > 0 else 0.0
        return out

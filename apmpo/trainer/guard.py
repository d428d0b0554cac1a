"""The non-finite guard: a NaN or infinite loss or gradient never reaches the weights.

:func:`apmpo.trainer.step.optimizer_step`, the one place where a gradient is applied,
measures the global gradient norm with :func:`gradient_norm` -- the number clipping
needs anyway, so the check adds one host read of a scalar the loop already logged:
``torch.nn.utils.get_total_norm`` and ``clip_grads_with_norm_`` are the two halves of
``clip_grad_norm_``, split so that the gradients are still unscaled when the check fails
(then it can name the parameter at fault) -- and asks :meth:`UpdateGuard.admits`:

- loss and norm finite: clip (``optim.max_grad_norm``, :func:`clip_to_norm`),
  ``optimizer.step()``, ``scheduler.step()``, zero the gradients: exactly the update of
  the plain loop;
- otherwise the update is **skipped**: the gradients are dropped and
  ``optimizer.step()`` is not called, so the parameters and the optimizer state
  (AdamW's moments and its per-parameter ``step`` counter, which sets the bias
  correction) are bit for bit what they were before the faulty update.

The LR scheduler still advances on a skipped update. Our choice: the schedule is a
function of the training step, as on a step where dynamic sampling kept no group
(:func:`advance_schedule`), so a skipped update does not shift warm-up and decay for the
rest of the run, and a run's learning rate at step k does not depend on how many of
its updates were skipped.

At the end of each training step :meth:`UpdateGuard.end_step` adds
``skipped_nonfinite`` (updates skipped in the step, logged every step) and, when it is
not 0, ``nonfinite_reason`` (which value was not finite: the loss, or the gradient of
which parameter) to the step's metrics. After ``optim.max_nonfinite_steps`` consecutive
steps with a skipped update, :meth:`UpdateGuard.check` stops the run with
:class:`NonFiniteError`, naming the step, the likely causes (learning rate, rewards,
precision) and the last good checkpoint. The count of consecutive bad steps is part of
the checkpoint (:meth:`UpdateGuard.state` / :meth:`UpdateGuard.load_state`), so a
resumed run stops where the uninterrupted one would.

Finite but enormous updates (a learning rate like 1e30) give finite weights whose
forward pass overflows: sampling then meets a next-token distribution that is not
finite before any loss is computed. :meth:`UpdateGuard.sampling` turns torch's
"probability tensor contains inf, nan or element < 0" error there (``generate``), or the
fast engine's :class:`~apmpo.sampling.engine.NonFiniteLogitsError`, into the same
:class:`NonFiniteError`, with the same causes and checkpoint named.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from apmpo.sampling.engine import NonFiniteLogitsError

from .checkpoint import latest_checkpoint
from .config import TrainConfig

__all__ = ["NonFiniteError", "UpdateGuard", "advance_schedule", "clip_to_norm", "gradient_norm"]

_SPLIT_CLIP = hasattr(torch.nn.utils, "get_total_norm")
"""torch >= 2.6: measure the norm, then scale; older torch only has clip_grad_norm_ (it scales as it measures,
which is harmless on a skipped update, but then a NaN norm hides which parameter was at fault)."""


class NonFiniteError(RuntimeError):
    """The run stopped after too many consecutive steps with a non-finite loss or gradient."""

    exit_code = 1
    """Exit status of ``apmpo train`` when the run stops for this reason."""


def advance_schedule(scheduler: Any, count: int = 1) -> None:
    """Step the LR scheduler ``count`` times without an optimizer update (the schedule follows the steps)."""
    with warnings.catch_warnings():  # torch warns when the scheduler steps before any optimizer.step()
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        for _ in range(count):
            scheduler.step()


def gradient_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """The global L2 norm of the parameters' gradients, NaN or inf included (0-d tensor).

    On torch < 2.6 this is ``clip_grad_norm_``, which also clips (to ``max_norm``; 0: no clipping).
    """
    if not _SPLIT_CLIP:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm or math.inf, error_if_nonfinite=False)
    return torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None], error_if_nonfinite=False)


def clip_to_norm(parameters: list[torch.nn.Parameter], max_norm: float, norm: torch.Tensor) -> None:
    """Scale the gradients so that their global norm (``norm``, from :func:`gradient_norm`) is at most ``max_norm``."""
    if max_norm > 0 and _SPLIT_CLIP:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)


def _describe(tensor: torch.Tensor) -> str:
    return "NaN" if bool(torch.isnan(tensor).any()) else "infinite"


class UpdateGuard:
    """Decides whether each optimizer update may be applied and keeps count of skipped ones; see the module docstring.

    Args:
        named_parameters: the trainable parameters with their names (to name one whose gradient is not finite).
        max_bad_steps: stop after this many consecutive steps with a skipped update.
        run_dir: the run directory (its last checkpoint is named when the run stops).
        hint: the likely causes to name when the run stops (see :meth:`for_config`).
    """

    def __init__(
        self,
        named_parameters: list[tuple[str, torch.nn.Parameter]],
        *,
        max_bad_steps: int,
        run_dir: str | Path,
        hint: str = "",
    ):
        self.named_parameters = named_parameters
        self.max_bad_steps, self.run_dir, self.hint = max_bad_steps, Path(run_dir), hint
        self.streak = 0
        """Consecutive steps (up to the last finished one) with a skipped update."""
        self._skipped: list[str] = []  # reasons of the updates skipped in the current step
        self._last_reason: str | None = None

    @classmethod
    def for_config(cls, model: torch.nn.Module, config: TrainConfig, run_dir: str | Path) -> UpdateGuard:
        """The guard of a training run configured by ``config``, writing to ``run_dir``."""
        op = config.optim
        precision = (
            f"low precision overflowing (model.dtype = {config.model.dtype}: try float32 or a lower lr)"
            if config.model.dtype.lower() not in ("float32", "fp32")
            else "an overflow in the model itself (model.dtype = float32)"
        )
        hint = (
            f"a learning rate too high for this model (optim.lr = {op.lr:g}, optim.max_grad_norm = "
            f"{op.max_grad_norm:g}); extreme rewards or advantages (reward.functions, "
            f"algorithm.advantage_normalization = {config.algorithm.advantage_normalization}); or {precision}"
        )
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        return cls(named, max_bad_steps=op.max_nonfinite_steps, run_dir=run_dir, hint=hint)

    def _reason(self, loss: float) -> str:
        if not math.isfinite(loss):
            return f"the loss is {'NaN' if math.isnan(loss) else 'infinite'}"
        bad = [
            (name, p.grad)
            for name, p in self.named_parameters
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())
        ]
        if not bad:  # finite gradients whose norm overflows
            return "the gradient norm overflows"
        name, grad = bad[0]
        more = f" (and {len(bad) - 1} more parameter{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        return f"the gradient of {name} is {_describe(grad)}{more}"

    def admits(self, loss: float, norm: float) -> bool:
        """Whether an update with this loss and gradient norm may be applied; if not, the skip is recorded."""
        if math.isfinite(loss) and math.isfinite(norm):
            return True
        self._skipped.append(self._reason(loss))
        return False

    def end_step(self, metrics: dict[str, Any]) -> None:
        """Add ``skipped_nonfinite`` (and ``nonfinite_reason``) to the step's metrics; update the streak."""
        metrics["skipped_nonfinite"] = len(self._skipped)
        if self._skipped:
            metrics["nonfinite_reason"] = self._skipped[0]
        self.streak = self.streak + 1 if self._skipped else 0
        self._last_reason = self._skipped[0] if self._skipped else None
        self._skipped = []

    def _error(self, what: str) -> NonFiniteError:
        checkpoint = latest_checkpoint(self.run_dir)
        where = (
            f"The last good checkpoint is {checkpoint}: resume from it with --resume after changing the setting at fault"
            if checkpoint
            else "No checkpoint was written yet (checkpoint.every = 0 saves only at the end)"
        )
        return NonFiniteError(f"{what}. Likely causes: {self.hint}. {where}.")

    def check(self, step: int) -> None:
        """Raise :class:`NonFiniteError` once ``max_bad_steps`` consecutive steps had a skipped update."""
        if self.streak >= self.max_bad_steps:
            raise self._error(
                f"step {step}: stopped after {self.streak} consecutive steps whose updates were skipped because a "
                f"value was not finite (last: {self._last_reason}; optim.max_nonfinite_steps = {self.max_bad_steps}; "
                "the weights are those of the last finite update)"
            )

    @contextlib.contextmanager
    def sampling(self, step: int) -> Iterator[None]:
        """Around a step's sampling: a next-token distribution that is not finite stops the run with a clear error."""
        try:
            yield
        except RuntimeError as exc:
            # the fast engine's NonFiniteLogitsError, or torch.multinomial (generate) on NaN / inf probabilities
            if not isinstance(exc, NonFiniteLogitsError) and "probability tensor contains" not in str(exc):
                raise
            raise self._error(
                f"step {step}: sampling failed because the model's next-token probabilities are not "
                "finite: its weights have diverged or its forward pass overflows"
            ) from exc

    def state(self) -> dict[str, int]:
        """What a checkpoint keeps of the guard."""
        return {"nonfinite_streak": self.streak}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` from a checkpoint's JSON state (0 when absent: older checkpoints)."""
        self.streak = int(state.get("nonfinite_streak", 0))

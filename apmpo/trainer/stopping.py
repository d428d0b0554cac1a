"""Preemption in the training loop: abandon or finish the current step, checkpoint, stop.

The loop runs each step's sampling and scoring (which change neither the weights nor
the optimizer) through :func:`sample_unless_stopped`: a stop signal arriving there
abandons the step at once and puts the RNG states and the data position back where the
step started, so the step is redone identically on resume. A signal arriving later in
the step (the updates, logging, evaluation, checkpoint) lets the step finish. Either
way the loop then calls :func:`preempted`, which makes sure the last completed step has
a checkpoint with optimizer, scheduler and RNG states (writing one if the periodic
checkpoints did not fall on it; step 0 if no step completed yet, so ``--resume`` always
works after a clean stop) and returns the :class:`apmpo.preemption.Preempted` to raise.
Resuming from that checkpoint continues bit for bit as the uninterrupted run would have.

A stop requested after the last step does not interrupt the end of the run (the final
evaluation and summary): the run is finished by then.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from apmpo.preemption import Preempted, StepAbandoned, StopRequest

from .checkpoint import latest_checkpoint, rng_state, set_rng_state
from .setup import PromptSampler

__all__ = ["preempted", "sample_unless_stopped"]

T = TypeVar("T")


def sample_unless_stopped(stop: StopRequest, sampler: PromptSampler, sample: Callable[[], T]) -> T | None:
    """``sample()`` as an abandonable region; None if a stop is (or was already) requested.

    On None the torch / numpy / python RNG states and ``sampler.position`` are those of
    the step's start: nothing of the abandoned step remains.
    """
    if stop.requested:
        return None
    rng, position = rng_state(), sampler.position
    try:
        with stop.abandonable():
            return sample()
    except StepAbandoned:
        set_rng_state(rng)
        sampler.position = position
        return None


def preempted(stop: StopRequest, run_dir: str | Path, step: int, total: int, save: Callable[[int], Path]) -> Preempted:
    """Checkpoint step ``step`` (the last completed one) unless a full checkpoint of it exists; the error to raise.

    ``save(step)`` writes a checkpoint with optimizer, scheduler and RNG states.
    """
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None or checkpoint.name != f"step-{step:06d}" or not (checkpoint / "trainer_state.pt").is_file():
        checkpoint = save(step)
    return Preempted(f"stopped by {stop.signal_name} after step {step} of {total}; checkpoint {checkpoint}", run_dir)

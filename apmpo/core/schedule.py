"""When a training schedule turns an objective into GRPO: the start-up guard's decision and text.

Paper: Huang et al., "Adapt to Thrive! Adaptive Power-Mean Policy Optimization",
arXiv 2605.04066. With at most one optimizer update per rollout batch, the loss is
computed with pi_old = pi_theta: every token ratio r_it is exactly 1, no clip bound
acts, and for the power mean d M_p(x) / d x_t = (1/T) x_t^(p-1) M_p(x)^(1-p) = 1/T at
x = 1 whatever p. The gradient of APMPO, PMPO, GMPO (p -> 0) and GSPO (sequence ratio
exp(mean_t log r_it), derivative 1/T per token) is then A_i / T_i per token, which is
GRPO's exactly: the adaptive exponent, FAC's eps_ada, the geometric mean and the
sequence ratio have no effect. DAPO stays DAPO (its token-level aggregation weights
every token by 1 / sum_i T_i, not 1 / (N T_i)), even though its clip-higher never acts.

Which objectives collapse is declared once, on their ``LossSpec``
(``single_update_equals``), and proved in ``tests/core/test_schedule.py``. This module
is the one place that decides whether to warn and words the warning; every entry point
(``apmpo train``, ``APMPOTrainer``, the verl trainer modes) calls it with its own count
of updates and the names of its own settings.
"""

from __future__ import annotations

from .losses import LOSSES

__all__ = ["SingleUpdateWarning", "single_update_warning"]


class SingleUpdateWarning(UserWarning):
    """The schedule gives one optimizer update per rollout batch, so the objective trains as another one."""


def single_update_warning(
    objective: str, updates_per_batch: int, *, allowed: bool, settings: str, fix: str, silence: str
) -> str | None:
    """The start-up warning for a schedule that makes ``objective``'s update another objective's, or None.

    Args:
        objective: a key of ``apmpo.LOSSES``.
        updates_per_batch: the optimizer updates that use one rollout (generation) batch
            under the entry point's settings; 1 means pi_old = pi_theta at every update.
        allowed: the entry point's ``allow_single_update`` setting (True silences it).
        settings: the settings that cause it, with their values (the entry point's names).
        fix: the settings to change, and how (the entry point's names).
        silence: the setting that silences the warning (the entry point's name).
    """
    if objective not in LOSSES:
        raise ValueError(f"objective: unknown loss {objective!r}; known: {', '.join(sorted(LOSSES))}")
    same_as = LOSSES[objective].single_update_equals
    if allowed or same_as is None or updates_per_batch > 1:
        return None
    return (
        f"{objective} runs one optimizer update per rollout batch ({settings}): the loss is computed with "
        f"pi_old = pi_theta, so every ratio is 1, no clip acts, and the gradient of {objective} is exactly "
        f"{same_as.upper()}'s -- this run trains {same_as.upper()}, not {objective.upper()} (what sets it apart, "
        f"its aggregation of the token ratios and its clip bounds, e.g. APMPO's adaptive p and FAC's eps_ada, "
        f"has no effect). To train {objective.upper()}, give each rollout batch at least 2 updates: {fix}. If "
        f"one update is what you want, set {silence} to silence this warning."
    )

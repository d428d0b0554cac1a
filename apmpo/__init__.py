"""apmpo: the reference implementation of APMPO (Adaptive Power-Mean Policy Optimization).

Paper: Huang et al., "Adapt to Thrive! Adaptive Power-Mean Policy Optimization for
Improved LLM Reasoning", arXiv 2605.04066. The objectives are pure tensor functions in
``apmpo.core``; the rewards, data, trainer, evaluation and integrations sit beside it.
Importing ``apmpo`` imports only torch (never transformers, trl or verl).
"""

from .core import (
    LOSSES,
    LossSpec,
    adaptive_p,
    fac_clip_high,
    feedback_stability_score,
    group_advantages,
    kl_penalty,
    log_power_mean,
    policy_loss,
    power_mean,
    register_loss,
    reward_statistics,
)

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "LossSpec",
    "__version__",
    "adaptive_p",
    "fac_clip_high",
    "feedback_stability_score",
    "group_advantages",
    "kl_penalty",
    "log_power_mean",
    "policy_loss",
    "power_mean",
    "register_loss",
    "reward_statistics",
]

"""The math of APMPO (arXiv 2605.04066) and its baselines: pure tensor functions.

No model, no I/O, no distributed code. Symbols follow docs/spec.md.
"""

from .adaptive import (
    FSS_VARIANTS,
    P_SCHEDULES,
    adaptive_p,
    check_reward_range,
    fac_bound,
    fac_clip_high,
    feedback_stability_score,
    normalize_reward_stats,
)
from .advantages import (
    ADVANTAGE_NORMALIZATIONS,
    STAT_SCOPES,
    group_advantages,
    reward_statistics,
)
from .aggregation import (
    AGGREGATIONS,
    aggregate_rows,
    aggregate_tokens,
    default_normalizer,
    masked_row_mean,
)
from .kl import KL_ESTIMATORS, kl_penalty, kl_per_token
from .losses import (
    LOSSES,
    REQUIRED,
    REWARD_STATISTICS,
    Hyperparameter,
    LossSpec,
    pessimistic_log_ratio,
    policy_loss,
    register_loss,
    resolve_hyperparameters,
)
from .power_mean import GEOMETRIC_P, log_power_mean, power_mean
from .schedule import SingleUpdateWarning, single_update_warning

__all__ = [
    "ADVANTAGE_NORMALIZATIONS",
    "AGGREGATIONS",
    "FSS_VARIANTS",
    "GEOMETRIC_P",
    "KL_ESTIMATORS",
    "LOSSES",
    "P_SCHEDULES",
    "REQUIRED",
    "REWARD_STATISTICS",
    "STAT_SCOPES",
    "Hyperparameter",
    "LossSpec",
    "SingleUpdateWarning",
    "adaptive_p",
    "aggregate_rows",
    "aggregate_tokens",
    "check_reward_range",
    "default_normalizer",
    "fac_bound",
    "fac_clip_high",
    "feedback_stability_score",
    "group_advantages",
    "kl_penalty",
    "kl_per_token",
    "log_power_mean",
    "masked_row_mean",
    "normalize_reward_stats",
    "pessimistic_log_ratio",
    "policy_loss",
    "power_mean",
    "register_loss",
    "resolve_hyperparameters",
    "reward_statistics",
    "single_update_warning",
]

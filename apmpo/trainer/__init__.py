"""A single-machine RLVR trainer for Hugging Face causal LMs, with every objective of ``apmpo.LOSSES``.

- :mod:`~apmpo.trainer.config`: the configuration tree (YAML + overrides + validation);
- :mod:`~apmpo.sampling.rollout`: batched sampling with ``generate``;
- :mod:`~apmpo.trainer.logprobs`: chunked completion log-probs (no full-vocabulary logits);
- :mod:`~apmpo.trainer.loop`: the training loop, readable top to bottom;
- :mod:`~apmpo.trainer.checkpoint`: atomic, resumable checkpoints;
- :mod:`~apmpo.trainer.guard`: a NaN / inf loss or gradient skips the update (never reaches the weights);
- :mod:`~apmpo.trainer.stopping`: SIGTERM / SIGINT: abandon or finish the step, checkpoint, stop (exit 75);
- :mod:`~apmpo.trainer.tracking`: metrics JSONL, TensorBoard, wandb, progress, samples, curves;
- :mod:`~apmpo.trainer.demo`: ``apmpo demo``.

Typical use::

    from apmpo.trainer import load_config, train
    result = train(load_config("my.yaml", ["optim.lr=1e-5"]))
"""

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import (
    AlgorithmConfig,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    RewardConfig,
    RolloutConfig,
    TrainConfig,
    apply_overrides,
    dump_config_yaml,
    load_config,
    packaged_config,
    validate_config,
)
from .logprobs import TokenLogProbs, completion_log_probs
from .loop import TrainResult, train

__all__ = [
    "AlgorithmConfig",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LoggingConfig",
    "ModelConfig",
    "OptimConfig",
    "RewardConfig",
    "RolloutConfig",
    "TokenLogProbs",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "completion_log_probs",
    "dump_config_yaml",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "packaged_config",
    "save_checkpoint",
    "train",
    "validate_config",
]

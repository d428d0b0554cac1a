"""Plug-ins that run APMPO (arXiv 2605.04066) on existing RL engines.

- ``apmpo.integrations.verl``: policy losses "apmpo" and "pmpo" for verl 0.9.x
  (Ray, FSDP/Megatron, vLLM/SGLang), their config class, and trainer modes that carry
  the rollout batch's reward statistics to the loss. Install with ``apmpo[verl]``.
- ``apmpo.integrations.trl``: ``APMPOConfig`` / ``APMPOTrainer``, drop-in replacements
  for TRL's ``GRPOConfig`` / ``GRPOTrainer``. Install with ``apmpo[trl]``.

Both call ``apmpo.policy_loss`` (one source of truth for the math). This package
imports neither verl nor TRL: import the submodule you need.
"""

__all__: list[str] = []

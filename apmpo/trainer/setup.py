"""The pieces the training loop is assembled from: device, data, rewards, optimiser, reference.

Kept out of ``loop.py`` so that the loop reads as the algorithm. Nothing here knows
which objective is trained.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from apmpo import rewards
from apmpo.data.loaders import load_examples
from apmpo.data.prompts import validate_template
from apmpo.rewards import overlong_penalty, score_value
from apmpo.sampling.encoder import prompt_encoder_for
from apmpo.tasks import BUILTIN_TASKS, make_task_examples

from .config import DataConfig, OptimConfig, RewardConfig

__all__ = [
    "BUILTIN_EVAL_SIZE",
    "BUILTIN_TRAIN_SIZE",
    "PromptSampler",
    "ReferencePolicy",
    "RewardFunctions",
    "TrainData",
    "build_optimizer",
    "build_rewards",
    "build_scheduler",
    "disable_dropout",
    "load_data",
    "lr_factor",
    "resolve_device",
    "seed_everything",
]

BUILTIN_TRAIN_SIZE = 10_000
"""Training examples generated for a built-in task when data.train_size is not set."""
BUILTIN_EVAL_SIZE = 500
"""Held-out examples generated for a built-in task when data.eval_size is not set."""
EVAL_TASK_SEED = 0
"""The held-out split of a built-in task is drawn with this fixed seed, whatever the training seed,
so that runs with different seeds are compared on the same problems."""


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """Training and held-out examples with their rendered prompts."""

    train: list[dict[str, Any]]
    """Training examples (dicts with "prompt", "answer" and other columns)."""
    train_prompts: list[str]
    """The rendered prompt of each training example."""
    eval: list[dict[str, Any]] | None
    """Held-out examples, or None."""
    template: str
    """Prompt template used for both splits."""
    add_special_tokens: bool
    """Tokenize prompts with the tokenizer's special tokens (plain-text prompts) or not (chat template)."""
    default_reward: str | None = None
    """The built-in task's verifier name (None for files)."""
    description: list[str] = field(default_factory=list)
    """Human-readable lines on what was loaded (and skipped)."""


def _load_split(
    cfg: DataConfig, source: str, split: str, size: int | None, seed: int, encoder: Any
) -> tuple[list[dict], str | None, str, str]:
    """(examples, task default reward, template, description) of one source, images attached by ``encoder``."""
    if source in BUILTIN_TASKS:
        spec = BUILTIN_TASKS[source]
        n = size or (BUILTIN_TRAIN_SIZE if split == "train" else BUILTIN_EVAL_SIZE)
        examples = make_task_examples(source, split, n, seed, **cfg.task)
        prepared = encoder.prepare(examples, on_bad_row=cfg.on_bad_row, where=f"data.{split} example")
        text = f"{split}: built-in task {source!r}, {len(prepared.examples)} examples"
        return prepared.examples, spec.default_reward, spec.template, _with_images(text, prepared)
    loaded = load_examples(
        source,
        prompt_column=cfg.prompt_column,
        answer_column=cfg.answer_column,
        on_bad_row=cfg.on_bad_row,
        limit=size,
        **cfg.loader_options,
    )
    prepared = encoder.prepare(list(loaded), source=source, on_bad_row=cfg.on_bad_row, where=f"data.{split} example")
    return prepared.examples, None, "{prompt}", _with_images(f"{split}: {loaded.summary()}", prepared)


def _with_images(text: str, prepared: Any) -> str:
    return text if prepared.image_column is None else f"{text}; {prepared.summary()}"


def load_data(cfg: DataConfig, tokenizer: Any, seed: int) -> TrainData:
    """Load (or generate) both splits and render every training prompt.

    ``tokenizer`` is the model's tokenizer or processor, or a prompt encoder
    (:func:`apmpo.sampling.prompt_encoder_for`), which attaches and checks the rows'
    images for a vision-language model and renders the prompts.
    """
    encoder = prompt_encoder_for(tokenizer, image_column=cfg.image_column, image_root=cfg.image_root)
    train, default_reward, task_template, line = _load_split(cfg, cfg.train, "train", cfg.train_size, seed, encoder)
    lines = [line]
    eval_source = cfg.eval
    if eval_source is None:
        eval_source = cfg.train if cfg.train in BUILTIN_TASKS else None
    eval_examples = None
    if eval_source is not None:
        eval_examples, _, _, line = _load_split(cfg, eval_source, "eval", cfg.eval_size, EVAL_TASK_SEED, encoder)
        lines.append(line)
    template = cfg.template if cfg.template != "{prompt}" else task_template
    for name, examples in (("data.train", train), ("data.eval", eval_examples)):
        if examples:
            try:
                validate_template(template, examples[0].keys())
            except ValueError as exc:
                raise ValueError(f"data.template: {exc} ({name})") from None
    prompts = [
        encoder.render(
            ex,
            template=template,
            system_prompt=cfg.system_prompt,
            use_chat_template=cfg.use_chat_template,
            where=f"data.train example {i + 1}",
        )
        for i, ex in enumerate(train)
    ]
    return TrainData(
        train,
        prompts,
        eval_examples,
        template,
        encoder.add_special_tokens(cfg.use_chat_template),
        default_reward,
        lines,
    )


class PromptSampler:
    """Hands out training example indices, epoch after epoch, in a seeded order.

    The state is one integer, ``position`` (prompts handed out so far): the order of
    epoch e is a permutation drawn from ``(seed, e)``, so a resumed run continues with
    exactly the prompts the uninterrupted run would have seen.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, position: int = 0):
        if size < 1:
            raise ValueError("the training set is empty")
        self.size, self.seed, self.shuffle, self.position = size, seed, shuffle, position
        self._epoch, self._order = -1, np.arange(size)

    def _order_of(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = (
                np.random.default_rng([self.seed, epoch]).permutation(self.size)
                if self.shuffle
                else np.arange(self.size)
            )
        return self._order

    def take(self, count: int) -> list[int]:
        """The next ``count`` example indices."""
        out = []
        for _ in range(count):
            epoch, offset = divmod(self.position, self.size)
            out.append(int(self._order_of(epoch)[offset]))
            self.position += 1
        return out


# --------------------------------------------------------------------------- rewards


@dataclass
class RewardFunctions:
    """Weighted reward functions with the TRL contract ``fn(completions, **columns) -> list[float | None]``."""

    names: list[str]
    """Function names, the first being the verifier (its mean score is the accuracy)."""
    weights: list[float]
    """Weight of each function in the total reward."""
    functions: list[Callable[..., Any]]
    """The callables."""
    kwargs: list[dict[str, Any]]
    """Extra keyword arguments of each function."""

    def verifier(self) -> Callable[..., Any]:
        """The first function (whose mean score is the accuracy) with its keyword arguments bound."""
        fn = self.functions[0]
        return functools.wraps(fn)(functools.partial(fn, **self.kwargs[0])) if self.kwargs[0] else fn

    def score(
        self,
        completions: Sequence[str],
        rows: Sequence[dict[str, Any]],
        *,
        prompts: Sequence[str] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        labels: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, dict[str, list[float]]]:
        """(total reward [N] float32, per-function scores) for completions and their example rows.

        As TRL calls reward functions: the dataset columns (all but "prompt") as keyword
        arguments, one entry per completion, plus ``prompts`` (the rendered prompts)
        and ``completion_ids`` (each completion's token ids, up to and including EOS).
        A None score counts as 0 (:func:`apmpo.rewards.score_value`). A NaN or infinite
        score raises ValueError naming the reward function and the completion (with its
        ``labels`` entry: which example and sample it is), before anything is trained on it.
        """
        columns: dict[str, list[Any]] = {}
        for name in rows[0]:
            if name != "prompt" and all(name in r for r in rows):
                columns[name] = [r[name] for r in rows]
        if prompts is not None:
            columns["prompts"] = list(prompts)
        if completion_ids is not None:
            columns["completion_ids"] = [list(ids) for ids in completion_ids]
        per_fn: dict[str, list[float]] = {}
        total = torch.zeros(len(completions), dtype=torch.float32)
        for name, weight, fn, kw in zip(self.names, self.weights, self.functions, self.kwargs):
            scores = fn(list(completions), **columns, **kw)
            if len(scores) != len(completions):
                raise ValueError(f"reward {name!r} returned {len(scores)} scores for {len(completions)} completions")
            values = []
            for i, s in enumerate(scores):
                value = score_value(s)
                if not math.isfinite(value):
                    row = f" ({labels[i]})" if labels is not None else ""
                    raise ValueError(f"reward {name!r} returned {s!r} for completion {i}{row}; rewards must be finite")
                values.append(value)
            per_fn[name] = values
            total += weight * torch.tensor(values, dtype=torch.float32)
        return total, per_fn


def build_rewards(
    cfg: RewardConfig,
    default_reward: str | None,
    custom: dict[str, Callable[..., Any]] | None = None,
    *,
    overlong: tuple[int, int, float] | None = None,
) -> RewardFunctions:
    """Resolve reward names: ``custom`` callables first, then ``apmpo.rewards``.

    An empty ``reward.functions`` means the custom functions (weight 1 each) if any, else
    the built-in task's verifier. ``overlong = (L_max, L_cache, weight)`` appends DAPO's
    soft overlong penalty (``apmpo.rewards.overlong_penalty``: 0 up to L_max - L_cache
    tokens, then linear down to -1 at L_max), scaled by ``weight``.
    """
    custom = dict(custom or {})
    spec = dict(cfg.functions) or ({name: 1.0 for name in custom} if custom else {})
    if not spec and default_reward:
        spec = {default_reward: 1.0}
    if not spec:
        raise ValueError("reward.functions: no reward function configured and the data has no built-in verifier")
    fns = []
    for name in spec:
        if name in custom:
            fns.append(custom[name])
            continue

        try:
            fns.append(rewards.get_reward(name))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"reward.functions: {exc}") from None
    result = RewardFunctions(
        list(spec), [float(w) for w in spec.values()], fns, [dict(cfg.kwargs.get(n, {})) for n in spec]
    )
    if overlong is not None:
        max_len, cache_len, weight = overlong
        result.names.append("overlong_penalty")
        result.weights.append(float(weight))
        result.functions.append(overlong_penalty.configure(max_len=max_len, cache_len=cache_len))
        result.kwargs.append({})
    return result


# --------------------------------------------------------------------------- optimisation


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (decay on matrices only, none on norms and biases)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused kernels (GPU and CPU): one pass over each tensor and no temporaries. On CPU, for
    # SmolLM2-135M, 0.08 s per step vs 0.40 s for the multi-tensor (foreach) path, which also
    # allocates a full-size temporary (0.54 GB); foreach where fused is unsupported.
    kept = [g for g in groups if g["params"]]
    betas = (cfg.betas[0], cfg.betas[1])
    try:
        return torch.optim.AdamW(kept, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(kept, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, foreach=True)


def lr_factor(update: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak lr at optimizer update ``update`` (0-based) of ``total``."""
    if cfg.warmup_steps and update < cfg.warmup_steps:
        return (update + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(total - cfg.warmup_steps, 1)
    progress = min(max(update - cfg.warmup_steps, 0) / span, 1.0)
    shape = 1.0 - progress if cfg.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_updates: int):
    """LambdaLR with linear warmup then constant / linear / cosine decay."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: lr_factor(u, total_updates, cfg))


def disable_dropout(model: torch.nn.Module) -> None:
    """RL on a fixed policy sample: dropout would make pi_theta stochastic, so it is switched off."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


class ReferencePolicy:
    """pi_ref: a frozen copy of the initial model, or (LoRA) the policy with its adapter disabled."""

    def __init__(self, model: Any, use_adapter_toggle: bool):
        self._policy = model
        self._toggle = use_adapter_toggle
        self._frozen = None
        if not use_adapter_toggle:
            self._frozen = copy.deepcopy(model)
            self._frozen.requires_grad_(False)
            self._frozen.eval()

    @contextlib.contextmanager
    def model(self) -> Iterator[Any]:
        """The reference model to run a no-grad forward pass with."""
        if self._toggle:
            with self._policy.disable_adapter():
                yield self._policy
        else:
            yield self._frozen

"""The RLVR training loop: APMPO (arXiv 2605.04066) or a baseline on a Hugging Face causal LM.

``train`` reads top to bottom:

1. :func:`start` -- validate the config, create the run directory, load the model, the
   data, the rewards, the optimizer and the schedule (:class:`~apmpo.trainer.step.TrainingRun`),
   resume from the latest checkpoint if asked, open the metrics log, and warn (console and
   a ``"kind": "warning"`` line in metrics.jsonl, :func:`start_warnings`) when a setting
   quietly makes the run train another objective;
2. per step, :func:`train_step` -- :func:`~apmpo.trainer.step.sample` (B prompts x G
   completions, scored), :func:`~apmpo.trainer.step.prepare` (advantages, reward
   statistics, loss mask, old and reference log-probs), :func:`~apmpo.trainer.step.update`
   (epochs x mini-batches x micro-batches; an update whose loss or gradient is not
   finite is skipped, :mod:`apmpo.trainer.guard`), and the step's metrics;
3. :func:`log_step` -- metrics.jsonl / TensorBoard / wandb, sample completions, progress;
4. :func:`after_step` -- the non-finite guard's stop after too many skipped steps in a
   row, held-out evaluation every ``eval.every`` steps and an atomic checkpoint every
   ``checkpoint.every`` steps (and at the end);
5. :func:`finish` -- the final evaluation, the curves and summary.json.

Between steps ``train`` checks for a stop signal (:mod:`apmpo.trainer.stopping`): on
SIGTERM / SIGINT a step still sampling is abandoned (nothing has changed yet), a step
past its sampling finishes, and the run checkpoints its last completed step and raises
:class:`apmpo.preemption.Preempted`.

Vision-language models (Qwen2-VL / Qwen2.5-VL) train through the same loop: the prompt
encoder chosen once from what the model loader returned
(:func:`apmpo.sampling.prompt_encoder_for`) attaches the rows' images, renders and
encodes the prompts, and the image tensors ride along in the rollout to generation and
to every log-prob pass.
"""

from __future__ import annotations

import datetime as _dt
import json
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from apmpo.core import LOSSES, single_update_warning
from apmpo.eval.harness import EvalSettings, evaluate_examples
from apmpo.models import load_model_and_tokenizer, use_lean_layers
from apmpo.preemption import StopRequest
from apmpo.sampling.encoder import prompt_encoder_for
from apmpo.sampling.rollout import engine_for, engine_message

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, config_to_dict, dump_config_yaml, validate_config
from .guard import UpdateGuard
from .setup import (
    PromptSampler,
    ReferencePolicy,
    build_optimizer,
    build_rewards,
    build_scheduler,
    disable_dropout,
    load_data,
    resolve_device,
    seed_everything,
)
from .step import PreparedBatch, TrainingRun, prepare, sample, skip_update, update
from .stopping import preempted, sample_unless_stopped
from .tracking import (
    MetricsWriter,
    ProgressBar,
    append_jsonl,
    atomic_write_text,
    plot_curves,
    read_jsonl,
)

__all__ = ["Session", "TrainResult", "evaluate_model", "run_directory", "train"]


@dataclass
class TrainResult:
    """What ``train`` returns (also written to <run>/summary.json)."""

    run_dir: Path
    """The run directory."""
    steps: int
    """The last step trained."""
    eval_before: float | None
    """Held-out accuracy before training (None if not evaluated)."""
    eval_after: float | None
    """Held-out accuracy after the last step (None if not evaluated)."""
    checkpoint: Path | None
    """The last checkpoint written."""
    wall_seconds: float
    """Wall time of this invocation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-step training metrics of this invocation."""


@dataclass
class Session:
    """One invocation of ``train``: the run, its directory and what it writes, and where it stands."""

    run: TrainingRun
    """What the steps work with."""
    run_dir: Path
    """The run directory."""
    writer: MetricsWriter
    """metrics.jsonl, TensorBoard, wandb."""
    progress: ProgressBar
    """The progress display."""
    start_step: int
    """The last step already trained (0, or the resumed checkpoint's step)."""
    controller_history: list[dict[str, Any]]
    """p, eps_high, FSS, mu_R, sigma_R of every step so far (kept in checkpoints)."""
    started: float
    """perf_counter() at the start of the invocation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-step training metrics of this invocation."""
    eval_before: float | None = None
    """Held-out accuracy before training."""
    last_checkpoint: Path | None = None
    """The last checkpoint written."""


# --------------------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    *,
    resume: bool | str = False,
    reward_functions: dict[str, Callable[..., Any]] | None = None,
    stop: StopRequest | None = None,
) -> TrainResult:
    """Train as configured.

    Args:
        config: the run's configuration (validated here, before anything is written).
        resume: True (the run directory named by logging) or a run directory: continue
            from its latest complete checkpoint.
        reward_functions: extra reward callables by name (TRL contract), usable in
            ``reward.functions``; with an empty ``reward.functions`` they are all used,
            weight 1 each.
        stop: the stop request of ``apmpo train`` (``StopRequest().installed()``): on a
            stop signal the run abandons or finishes its step, checkpoints the last
            completed step and raises ``apmpo.preemption.Preempted``
            (:mod:`apmpo.trainer.stopping`). None: signals keep their usual effect.
    """
    stop = stop or StopRequest()
    session = start(config, resume, reward_functions)
    step, eval_after = session.start_step, None  # step: the last completed step
    try:
        for current in range(session.start_step + 1, config.steps + 1):
            trained = train_step(session.run, current, stop)
            if trained is None:  # a stop signal abandoned the step while it was sampling
                break
            log_step(session, current, *trained)
            after_step(session, current)
            step = current
            if stop.requested:
                break
        if stop.requested and step < config.steps:
            raise preempted(stop, session.run_dir, step, config.steps, lambda done: save(session, done))
        if config.eval.at_end and step == config.steps and step > session.start_step:
            eval_after = evaluate_heldout(session, step)
    finally:
        session.progress.close()
        session.writer.close()
    return finish(session, step, eval_after)


def start(config: TrainConfig, resume: bool | str, reward_functions: dict[str, Callable[..., Any]] | None) -> Session:
    """Everything before the first step: validation, run directory, model, data, rewards, optimizer, resume, logs."""
    started = time.perf_counter()
    config = validate_config(config, extra_rewards=tuple(reward_functions or ()))
    run_dir = run_directory(config, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = build_run(config, reward_functions, run_dir)
    start_step, resumed_from = 0, None
    controller_history: list[dict[str, Any]] = []
    if resume:
        start_step, controller_history, resumed_from = resume_run(run, run_dir)
    atomic_write_text(run_dir / "config.yaml", dump_config_yaml(config, comments=False))
    writer = MetricsWriter(
        run_dir,
        tensorboard=config.logging.tensorboard,
        wandb=config.logging.wandb,
        wandb_project=config.logging.wandb_project,
        config=config_to_dict(config),
        run_name=run_dir.name,
        resume_step=start_step if resume else None,
    )
    progress = ProgressBar(config.logging.progress, config.steps, start_step, description=config.algorithm.name)
    session = Session(run, run_dir, writer, progress, start_step, controller_history, started)
    for line in start_messages(run, resumed_from, start_step):
        progress.write(line)
    for warning in start_warnings(run):
        progress.write(f"warning: {warning}")
        writer.log(start_step, {"message": warning}, kind="warning")
    if config.eval.at_start and start_step == 0 and not resume:  # a run stopped before step 1 evaluated already
        session.eval_before = evaluate_heldout(session, 0)
    return session


def build_run(
    config: TrainConfig, reward_functions: dict[str, Callable[..., Any]] | None, run_dir: Path
) -> TrainingRun:
    """Seed, then load the model (and its prompt encoder), the data, the rewards, the optimizer and the schedule."""
    al = config.algorithm
    device = resolve_device(config.model.device)
    if config.model.num_threads:
        torch.set_num_threads(config.model.num_threads)
    seed_everything(config.seed)
    model, tokenizer = load_model_and_tokenizer(
        config.model.name,
        gguf_file=config.model.gguf_file,
        dtype=config.model.dtype,
        device=device,
        trust_remote_code=config.model.trust_remote_code,
        gradient_checkpointing=config.model.gradient_checkpointing,
        lora=config.model.lora,
        cache_dir=config.model.cache_dir,
        seed=config.seed,
        processor_kwargs=config.model.processor_kwargs,
    )
    encoder = prompt_encoder_for(tokenizer, image_column=config.data.image_column, image_root=config.data.image_root)
    disable_dropout(model)
    if config.model.lean_layers:
        use_lean_layers(model)
    reference = ReferencePolicy(model, use_adapter_toggle=config.model.lora is not None) if al.beta > 0 else None
    data = load_data(config.data, encoder, config.seed)
    overlong = (config.rollout.max_new_tokens, al.overlong_buffer, al.overlong_penalty) if al.overlong_buffer else None
    rewards = build_rewards(config.reward, data.default_reward, reward_functions, overlong=overlong)
    sampler = PromptSampler(len(data.train), config.seed, config.data.shuffle)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.steps * al.epochs * al.mini_batches)
    guard = UpdateGuard.for_config(model, config, run_dir)
    return TrainingRun(
        config, model, encoder, data, rewards, sampler, optimizer, scheduler, reference, LOSSES[al.name], device, guard
    )


def resume_run(run: TrainingRun, run_dir: Path) -> tuple[int, list[dict[str, Any]], Path]:
    """Restore the latest complete checkpoint (weights, optimizer, schedule, RNG, data position); drop later evals."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ValueError(f"{run_dir}: no complete checkpoint to resume from")
    state = load_checkpoint(checkpoint, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler)
    check_resumable(run, state, checkpoint)
    start_step, run.sampler.position = int(state["step"]), int(state["prompts_consumed"])
    run.guard.load_state(state)
    stale_evals = sorted((run_dir / "eval").glob("step-*")) if (run_dir / "eval").is_dir() else []
    for stale in stale_evals:
        if int(stale.name.split("-")[1]) > start_step:
            shutil.rmtree(stale, ignore_errors=True)
    return start_step, list(state.get("controller_history", [])), checkpoint


def check_resumable(run: TrainingRun, state: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to resume under settings that would make the continued run differ from an uninterrupted one.

    The sampler: the fast engine and ``generate`` draw different completions from the same
    RNG state, so the engine that sampled before the checkpoint (``state["sampling_engine"]``,
    the one used, after any fallback) must sample after it. A checkpoint that does not record
    it predates the fast engine: ``generate`` sampled.
    """
    saved = state.get("sampling_engine", "hf")
    now, _ = engine_for(run.model, run.config.rollout)
    if saved != now:
        raise ValueError(
            f"{checkpoint}: its rollouts were sampled with rollout.engine={saved}, this run would sample with "
            f"{now}; the two engines draw different completions from the same seed, so the resumed run would not "
            f"continue the interrupted one: resume with rollout.engine={saved}, or start a new run"
        )


def start_messages(run: TrainingRun, resumed_from: Path | None, start_step: int) -> list[str]:
    """The lines shown before the first step: what was loaded, which sampler draws the rollouts, where the run resumes."""
    sampler, is_warning = engine_message(run.model, run.config.rollout)
    lines = [*run.data.description, *([] if is_warning else [sampler])]
    if resumed_from is not None:
        lines.append(f"resumed from {resumed_from} (step {start_step})")
    return lines


def start_warnings(run: TrainingRun) -> list[str]:
    """Settings that quietly make the run train something else, or slower, said before the first step (console, log).

    One optimizer update per rollout batch (``epochs = mini_batches = 1``) makes APMPO's,
    PMPO's, GMPO's and GSPO's gradient exactly GRPO's (``apmpo.core.schedule``; docs/training.md).
    ``rollout.engine=fast`` on a model the engine cannot decode (LoRA/PEFT projections, an
    architecture outside the Llama family) samples with transformers ``generate`` instead.
    """
    config = run.config
    al = config.algorithm
    single_update = single_update_warning(
        al.name,
        al.epochs * al.mini_batches,
        allowed=al.allow_single_update,
        settings=f"algorithm.epochs={al.epochs}, algorithm.mini_batches={al.mini_batches}",
        fix="e.g. algorithm.mini_batches=4 (paper_math_gpu.yaml: 4 updates of 128 of the 512 responses) or "
        "algorithm.epochs=2",
        silence="algorithm.allow_single_update=true",
    )
    sampler, is_warning = engine_message(run.model, config.rollout)
    return [w for w in (single_update, sampler if is_warning else None) if w is not None]


def train_step(run: TrainingRun, step: int, stop: StopRequest) -> tuple[dict[str, Any], PreparedBatch | None] | None:
    """One step: sample, prepare, update; returns the step's metrics and its prepared batch (None if none was kept).

    None instead if a stop signal came before or during the sampling: the step is
    abandoned, nothing of it kept (:func:`~apmpo.trainer.stopping.sample_unless_stopped`).
    """
    t_step = time.perf_counter()
    with run.guard.sampling(step):  # non-finite next-token probabilities: a clear NonFiniteError
        drawn = sample_unless_stopped(stop, run.sampler, lambda: sample(run))
    if drawn is None:
        return None
    batch, sampled = drawn
    t_gen = time.perf_counter() - t_step
    metrics: dict[str, Any] = dict(sampled)
    prepared = None
    if batch is not None:
        for name, values in batch.scores.items():
            metrics[f"reward/{name}"] = sum(values) / len(values)
        prepared = prepare(run, batch, step)
        updates, forward_tokens = update(run, prepared)
        metrics.update(batch_metrics(prepared, forward_tokens))
        metrics.update(mean_over_updates(updates))
    else:
        skip_update(run)
    run.guard.end_step(metrics)
    metrics.update(throughput(run, metrics, prepared, sampled, time.perf_counter() - t_step, t_gen))
    return metrics, prepared


def batch_metrics(prepared: PreparedBatch, forward_tokens: int) -> dict[str, Any]:
    """The batch's rewards, reward statistics, advantages and token counts."""
    rewards, N = prepared.rewards, len(prepared.batch.rows)
    return {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std()) if N > 1 else 0.0,
        "mu_r": float(prepared.reward_mean.float().mean()),
        "sigma_r": float(prepared.reward_std.float().mean()),
        "adv_zero_frac": float((prepared.advantages == 0).float().mean()),
        "trained_rows": int(prepared.active.sum()),
        "train_tokens": int(prepared.loss_mask.sum()),
        "forward_tokens": forward_tokens,
    }


def mean_over_updates(updates: list[dict[str, float | None]]) -> dict[str, float]:
    """Each update metric (loss, grad_norm, p, eps_high, clip fractions, ...) averaged over the step's updates."""
    out = {}
    for key in sorted({k for u in updates for k in u}):
        values = [value for u in updates if (value := u.get(key)) is not None]
        if values:
            out[key] = sum(values) / len(values)
    return out


def throughput(
    run: TrainingRun,
    metrics: dict[str, Any],
    prepared: PreparedBatch | None,
    sampled: dict[str, float],
    step_seconds: float,
    gen_seconds: float,
) -> dict[str, Any]:
    """Learning rate, timings, tokens per second, data position and peak memory of the step."""
    rollout = prepared.batch.rollout if prepared is not None else None
    seq_tokens = int(rollout.prompt_mask.sum() + rollout.completion_mask.sum()) if rollout is not None else 0
    out = {
        "lr": run.scheduler.get_last_lr()[0],
        "step_seconds": step_seconds,
        "rollout_seconds": gen_seconds,
        "train_seconds": step_seconds - gen_seconds,
        "tokens_per_s": seq_tokens / step_seconds,
        "train_tokens_per_s": metrics.get("forward_tokens", 0) / max(step_seconds - gen_seconds, 1e-9),
        "gen_tokens_per_s": sampled["generated_tokens"] / max(sampled["generation_seconds"], 1e-9),
        "prompts_consumed": run.sampler.position,
        "peak_rss_gb": _peak_rss_gb(),
    }
    if run.device.type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated(run.device) / 1024**3
    return out


# --------------------------------------------------------------------------- after the step


def log_step(session: Session, step: int, metrics: dict[str, Any], prepared: PreparedBatch | None) -> None:
    """The step's metrics to every sink, its controllers to the history, a few samples, the progress line."""
    config = session.run.config
    session.writer.log(step, metrics)
    session.history.append(metrics)
    session.controller_history.append(
        {k: metrics.get(k) for k in ("p", "eps_high", "fss", "mu_r", "sigma_r")} | {"step": step}
    )
    if prepared is not None and config.logging.sample_every and step % config.logging.sample_every == 0:
        write_samples(session.run_dir / "samples.jsonl", step, prepared, config.logging.num_samples)
    session.progress.update(
        {
            "acc": metrics["accuracy"],
            "R": metrics.get("reward_mean"),
            "p": metrics.get("p"),
            "eps": metrics.get("eps_high"),
            "len": metrics["response_length"],
            "s/step": metrics["step_seconds"],
        }
    )


def write_samples(path: Path, step: int, prepared: PreparedBatch, count: int) -> None:
    """``count`` completions spread over the batch, with their reward, advantage and each reward function's score."""
    batch = prepared.batch
    N, rollout = len(batch.rows), batch.rollout
    for i in torch.linspace(0, N - 1, min(count, N)).round().long().unique().tolist():
        append_jsonl(
            path,
            {
                "step": step,
                "prompt": batch.rows[i].get("prompt"),
                "answer": batch.rows[i].get("answer"),
                "completion": rollout.completions[i],
                "reward": float(batch.rewards[i]),
                "advantage": float(prepared.advantages[i]),
                "scores": {k: v[i] for k, v in batch.scores.items()},
                "truncated": bool(rollout.truncated[i]),
            },
        )


def after_step(session: Session, step: int) -> None:
    """The stop after too many non-finite steps in a row, periodic held-out evaluation and checkpoint."""
    config = session.run.config
    session.run.guard.check(step)
    if config.eval.every and step % config.eval.every == 0 and not (step == config.steps and config.eval.at_end):
        evaluate_heldout(session, step)
    if (config.checkpoint.every and step % config.checkpoint.every == 0) or (
        step == config.steps and config.checkpoint.save_final
    ):
        session.last_checkpoint = save(session, step, with_optimizer=config.checkpoint.save_optimizer)


def save(session: Session, step: int, with_optimizer: bool = True) -> Path:
    """Checkpoint ``step``: weights, optimizer / schedule / RNG states (``with_optimizer``), data position,
    controller history, the non-finite streak and the config."""
    run, config = session.run, session.run.config
    return save_checkpoint(
        session.run_dir,
        step,
        model=run.model,
        tokenizer=run.encoder.processor,
        optimizer=run.optimizer if with_optimizer else None,
        scheduler=run.scheduler,
        state={
            "prompts_consumed": run.sampler.position,
            "controller_history": session.controller_history,
            "config": config_to_dict(config),
            "sampling_engine": engine_for(run.model, config.rollout)[0],
            **run.guard.state(),
        },
        keep_last=config.checkpoint.keep_last,
    )


def evaluate_heldout(session: Session, step: int) -> float | None:
    """Held-out accuracy at ``step`` (records in <run>/eval/step-NNNNNN), logged; None without a held-out split."""
    run = session.run
    if not run.data.eval:
        return None
    t0 = time.perf_counter()
    accuracy = evaluate_model(run, session.run_dir / "eval" / f"step-{step:06d}")
    session.writer.log(step, {"accuracy": accuracy, "seconds": time.perf_counter() - t0}, kind="eval")
    session.progress.write(f"step {step}: held-out accuracy {accuracy:.3f}")
    return accuracy


def evaluate_model(run: TrainingRun, out_dir: Path | None) -> float:
    """Held-out accuracy: mean verifier score (Pass@1) on the eval split, via ``apmpo.eval``."""
    config, ev = run.config, run.config.eval
    settings = EvalSettings(
        engine=config.rollout.engine,
        n=ev.num_samples,
        temperature=ev.temperature,
        top_p=config.rollout.top_p if ev.temperature > 0 else 1.0,
        max_new_tokens=ev.max_new_tokens or config.rollout.max_new_tokens,
        max_prompt_tokens=config.rollout.max_prompt_tokens,
        batch_size=ev.batch_size,
        seed=config.seed,
        limit=ev.max_examples,
    )
    was_training = run.model.training
    try:
        result = evaluate_examples(
            run.model,
            run.encoder,
            run.data.eval or [],
            settings,
            name="heldout",
            template=run.data.template,
            system_prompt=config.data.system_prompt,
            use_chat_template=config.data.use_chat_template,
            reward=run.rewards.verifier(),
            out_dir=out_dir,
        )
    finally:
        run.model.train(was_training)
    return float(result.metric("pass@1"))


def finish(session: Session, step: int, eval_after: float | None) -> TrainResult:
    """The curves and summary.json; the result of the invocation."""
    config = session.run.config
    if config.logging.plot:
        plot_curves(
            session.run_dir / "metrics.jsonl",
            session.run_dir / "curves.png",
            title=f"{config.algorithm.name} on {config.data.train}",
        )
    result = TrainResult(
        session.run_dir,
        step,
        session.eval_before,
        eval_after,
        session.last_checkpoint,
        time.perf_counter() - session.started,
        session.history,
    )
    _write_summary(result, config)
    return result


# --------------------------------------------------------------------------- run directory


def run_directory(config: TrainConfig, resume: bool | str) -> Path:
    """The run directory: resume -> an existing one; otherwise a new one (never overwrite a run)."""
    if isinstance(resume, str):
        return Path(resume)
    name = config.logging.run_name
    if resume:
        if name is None:
            raise ValueError("--resume needs the run directory: give it (--resume RUN_DIR) or set logging.run_name")
        return Path(config.logging.output_dir) / name
    if name is None:
        name = f"{config.algorithm.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path = Path(config.logging.output_dir) / name
    if path.exists() and any(path.iterdir()):
        raise ValueError(
            f"{path}: the run directory already exists; use --resume to continue it or choose another logging.run_name"
        )
    return path


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _write_summary(result: TrainResult, config: TrainConfig) -> None:
    evals = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    summary = {
        "algorithm": config.algorithm.name,
        "model": config.model.name,
        "data": config.data.train,
        "steps": result.steps,
        "eval_accuracy_before": next((r["accuracy"] for r in evals if r["step"] == 0), None),
        "eval_accuracy_after": next((r["accuracy"] for r in reversed(evals) if r["step"] == result.steps), None),
        "eval": [{"step": r["step"], "accuracy": r["accuracy"]} for r in evals],
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "wall_seconds": result.wall_seconds,
    }
    atomic_write_text(result.run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")

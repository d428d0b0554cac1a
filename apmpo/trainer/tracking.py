"""What a run shows and leaves behind: metrics JSONL, TensorBoard, wandb, progress bar, samples, curves.

Files in the run directory:

- ``metrics.jsonl``: one JSON object per training step (and one per evaluation,
  with ``"kind": "eval"``); on ``--resume`` the lines after the resumed step are dropped
  so the file always describes one consistent run;
- ``tensorboard/``: the same scalars (``train/...``, ``eval/...``);
- ``samples.jsonl``: every ``logging.sample_every`` steps, a few prompts with their
  completions, rewards and advantages;
- ``curves.png``: accuracy (training rollouts and held-out), p and eps_high over steps.

wandb is imported only when enabled. The progress bar is tqdm (default on a
terminal) or rich, with ETA and the key metrics in its postfix.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from apmpo.io import append_text, atomic_savefig, atomic_write_text, pyplot

__all__ = ["MetricsWriter", "ProgressBar", "append_jsonl", "atomic_write_text", "plot_curves", "read_jsonl"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line, all or nothing (:func:`apmpo.io.append_text`: a failed append leaves no torn line)."""
    append_text(path, json.dumps({k: _clean(v) for k, v in record.items()}, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete JSON lines of a file (a torn last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_jsonl_after(path: str | os.PathLike, step: int) -> None:
    """Keep the records with ``step`` <= ``step`` (atomic rewrite)."""
    records = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
    if Path(path).exists():
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class MetricsWriter:
    """Per-step scalars to metrics.jsonl, TensorBoard and (optionally) wandb."""

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool,
        wandb: bool,
        wandb_project: str,
        config: dict[str, Any],
        run_name: str,
        resume_step: int | None = None,
    ):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None:
            truncate_jsonl_after(self.path, resume_step)
            truncate_jsonl_after(run_dir / "samples.jsonl", resume_step)
        self._tb = None
        if tensorboard:
            # heavy (tensorboard): only when logging.tensorboard is on
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                log_dir=str(run_dir / "tensorboard"), purge_step=(resume_step + 1) if resume_step else None
            )
        self._wandb = None
        if wandb:
            try:
                # optional (wandb): only when logging.wandb is on
                import wandb as wandb_module
            except ImportError:
                raise ImportError(
                    "logging.wandb is true but the wandb package is not installed: pip install 'apmpo[wandb]'"
                ) from None
            self._wandb = wandb_module.init(
                project=wandb_project, name=run_name, config=config, dir=str(run_dir), resume="allow", id=run_name
            )

    def log(self, step: int, metrics: dict[str, Any], kind: str = "train") -> None:
        append_jsonl(self.path, {"kind": kind, "step": step, **metrics})
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for key, value in scalars.items():
                if math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"{kind}/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


class ProgressBar:
    """A live bar with ETA and key metrics (tqdm or rich), plain log lines, or nothing.

    Styles: "tqdm", "rich", "log" (a line every ~5% of the steps, for non-interactive
    output), "none"; "auto" is tqdm on a terminal and "log" otherwise.
    """

    def __init__(self, style: str, total: int, initial: int = 0, description: str = "train"):
        if style == "auto":
            style = "tqdm" if sys.stderr.isatty() else "log"
        self.style = style
        self._bar: Any = None
        self._total, self._done, self._desc = total, initial, description
        self._every = max(1, total // 20)
        self._t0 = time.perf_counter()
        self._start = initial
        if style == "tqdm":
            self._bar = tqdm(total=total, initial=initial, desc=description, unit="step", dynamic_ncols=True)
        elif style == "rich":
            # optional (rich): only for logging.progress=rich
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, completed=initial, info="")

    def update(self, metrics: dict[str, Any]) -> None:
        info = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in metrics.items() if v is not None}
        self._done += 1
        if self.style == "log":
            if self._done % self._every == 0 or self._done == self._total:
                elapsed = time.perf_counter() - self._t0
                eta = elapsed / max(self._done - self._start, 1) * (self._total - self._done)
                text = " ".join(f"{k}={v}" for k, v in info.items())
                print(
                    f"{self._desc} step {self._done}/{self._total} [{elapsed:.0f}s, eta {eta:.0f}s] {text}",
                    file=sys.stderr,
                    flush=True,
                )
        elif self.style == "tqdm":
            self._bar.set_postfix(info, refresh=False)
            self._bar.update(1)
        elif self.style == "rich":
            self._bar.update(self._task, advance=1, info=" ".join(f"{k}={v}" for k, v in info.items()))

    def write(self, text: str) -> None:
        if self.style == "tqdm":
            self._bar.write(text)
        elif self.style == "rich":
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.style == "tqdm":
            self._bar.close()
        elif self.style == "rich":
            self._bar.stop()


def _series(records: Iterable[dict[str, Any]], kind: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        if r.get("kind", "train") == kind and isinstance(r.get(key), (int, float)):
            xs.append(int(r["step"]))
            ys.append(float(r[key]))
    return xs, ys


def plot_curves(metrics_path: str | os.PathLike, out_path: str | os.PathLike, title: str = "") -> Path:
    """PNG with three panels: accuracy (train rollouts, held-out), p, and eps_high, over steps."""
    plt = pyplot()

    records = read_jsonl(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    x, y = _series(records, "train", "accuracy")
    ax.plot(x, y, label="train rollouts (sampled)", color="tab:blue", alpha=0.7)
    x, y = _series(records, "eval", "accuracy")
    ax.plot(x, y, "o-", label="held-out (eval)", color="tab:red")
    ax.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    for ax, key, label in (
        (axes[1], "p", "power-mean exponent p"),
        (axes[2], "eps_high", "upper clip eps_high (eps_ada)"),
    ):
        x, y = _series(records, "train", key)
        ax.plot(x, y, color="tab:green" if key == "p" else "tab:purple")
        ax.set(xlabel="step", title=label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    try:
        atomic_savefig(fig, out_path, dpi=110)
    finally:
        plt.close(fig)
    return out_path

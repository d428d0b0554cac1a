"""Trainer throughput and memory: steps/s, tokens/s and peak RSS for a training config.

Not a test: run by hand, numbers go to docs/training.md. Each workload runs in its own
process (so its peak RSS is its own), for ``--steps`` steps with evaluation,
checkpoints, TensorBoard and plotting switched off; the first ``--warmup`` steps are
left out of the medians.

    .venv/bin/python benchmarks/bench_trainer.py                       # tiny + demo workloads
    .venv/bin/python benchmarks/bench_trainer.py --workload tiny --steps 20
    .venv/bin/python benchmarks/bench_trainer.py --workload demo --steps 4 --out bench.json

Reported per workload (medians over the measured steps, min-max in brackets):

- step_s: wall seconds per step; steps_per_s = 1 / step_s;
- tokens_per_s: prompt + completion tokens of the rollout batch per step second;
- gen_tokens_per_s: completion tokens generated per second of ``generate``;
- train_tokens_per_s: tokens through the gradient passes (with padding) per second of
  the training phase (old/reference log-probs, forward/backward, optimizer);
- rollout / train split of the step time;
- peak_rss_gb: the process's peak resident memory (ru_maxrss), model load included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from apmpo.io import atomic_write_json
from apmpo.provenance import machine_info

WORKLOADS = {
    "tiny": ("tiny_test.yaml", ["rollout.prompts_per_step=8", "rollout.group_size=8", "rollout.max_new_tokens=16",
                                "optim.micro_batch_size=16", "algorithm.mini_batches=1",
                                "algorithm.allow_single_update=true"]),  # the workload of docs/training.md's table
    "demo": ("cpu_demo.yaml", []),
}
OFF = ["eval.at_start=false", "eval.at_end=false", "checkpoint.save_final=false", "logging.tensorboard=false",
       "logging.plot=false", "logging.progress=none", "logging.sample_every=0"]


def _child(config_name: str, overrides: list[str], steps: int, out_path: str) -> None:
    """Run the workload in this process and write its per-step metrics as JSON."""
    import resource

    from apmpo.trainer.config import load_config, packaged_config
    from apmpo.trainer.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(packaged_config(config_name),
                             [*overrides, *OFF, f"steps={steps}", f"logging.output_dir={tmp}", "logging.run_name=bench"])
        t0 = time.perf_counter()
        result = train(config)
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    with open(out_path, "w") as f:
        json.dump({"history": result.history, "wall_seconds": wall, "peak_rss_gb": peak}, f)


def _stat(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else {}


def run_workload(name: str, steps: int, warmup: int, extra: list[str]) -> dict:
    config_name, overrides = WORKLOADS[name]
    overrides = [*overrides, *extra]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_path = f.name
    cmd = [sys.executable, __file__, "--child", config_name, "--steps", str(steps), "--child-out", out_path, "--", *overrides]
    subprocess.run(cmd, check=True)
    with open(out_path) as f:
        raw = json.load(f)
    os.unlink(out_path)
    measured = raw["history"][warmup:] or raw["history"]
    series = {key: [m[key] for m in measured if isinstance(m.get(key), (int, float))]
              for key in ("step_seconds", "tokens_per_s", "gen_tokens_per_s", "train_tokens_per_s", "rollout_seconds",
                          "train_seconds", "trained_rows", "forward_tokens", "response_length")}
    step = _stat(series["step_seconds"])
    return {
        "workload": name, "config": config_name, "overrides": overrides, "steps": steps, "warmup": warmup,
        "steps_per_s": 1.0 / step["median"], "step_s": step,
        **{k: _stat(v) for k, v in series.items() if k != "step_seconds"},
        "peak_rss_gb": raw["peak_rss_gb"], "wall_seconds": raw["wall_seconds"],
    }


def _table(results: list[dict]) -> str:
    lines = ["| workload | steps/s | s/step (min-max) | tokens/s | gen tok/s | train tok/s | rollout s | train s | peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['workload']} | {r['steps_per_s']:.3f} | {r['step_s']['median']:.2f} ({r['step_s']['min']:.2f}-{r['step_s']['max']:.2f}) "
            f"| {r['tokens_per_s']['median']:.0f} | {r['gen_tokens_per_s']['median']:.0f} | {r['train_tokens_per_s']['median']:.0f} "
            f"| {r['rollout_seconds']['median']:.2f} | {r['train_seconds']['median']:.2f} | {r['peak_rss_gb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append",
                        help="workload(s) to run (default: tiny and demo)")
    parser.add_argument("--steps", type=int, default=None, help="steps per workload (default: tiny 20, demo 5)")
    parser.add_argument("--warmup", type=int, default=1, help="leading steps left out of the medians")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every workload")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.overrides, args.steps, args.child_out)
        return 0
    results = []
    for name in args.workload or ["tiny", "demo"]:
        steps = args.steps or {"tiny": 20, "demo": 5}[name]
        print(f"[bench] {name}: {steps} steps ...", file=sys.stderr, flush=True)
        results.append(run_workload(name, steps, args.warmup, args.overrides))
    report = {"machine": machine_info(), "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "results": results}
    print(_table(results))
    print(json.dumps(report["machine"]))
    if args.out:
        atomic_write_json(args.out, report, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

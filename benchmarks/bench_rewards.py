"""Throughput of the verifiable rewards on real answers (a benchmark, not a test).

Measures items per second of :func:`apmpo.rewards.math_accuracy` on MATH500:

* gold vs gold: each completion ends with ``\\boxed{gold}``; checked by math-verify in
  the worker pool (``fast_path=False``) and with the default in-process shortcut for
  identical strings (``fast_path=True``);
* gold vs perturbed: the first integer of the gold answer plus one (always through
  math-verify: the strings differ);
* worker start-up (first call of a fresh pool: spawning processes, importing sympy);

and of :func:`apmpo.rewards.exact_match` on GSM8K test answers (in process). Every
measured call starts from fresh workers that have been warmed up with one trivial
item, so start-up is reported separately and no cache carries over between rows.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_rewards.py [--data DIR] [--workers N] [--repeat R] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from apmpo.io import atomic_write_json  # noqa: E402
from apmpo.provenance import machine_info  # noqa: E402
from apmpo.rewards import exact_match, gold_answer_text, math_accuracy, shutdown_pools  # noqa: E402
from tests.rewards.realdata import DATA_DIR, load_jsonl, perturb_answer  # noqa: E402


def boxed(answer: str) -> str:
    return f"Reasoning... so the final answer is $\\boxed{{{answer}}}$."


def timed(fn, completions, golds, repeat: int, fresh: bool) -> tuple[float, list]:
    """Median seconds of ``fn(completions, answer=golds)`` over ``repeat`` runs, and the scores."""
    seconds = []
    scores: list = []
    for _ in range(repeat):
        if fresh:
            shutdown_pools()
            fn([boxed("1")], answer=["1"])  # start and warm the workers outside the timing
        start = time.perf_counter()
        scores = fn(completions, answer=golds)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DATA_DIR, help="folder with math500/test.jsonl and gsm8k/test.jsonl"
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, cpu count))")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON to this file")
    args = parser.parse_args()
    math500 = args.data / "math500" / "test.jsonl"
    if not math500.is_file():
        parser.error(f"--data: {math500} does not exist")
    if args.repeat < 1:
        parser.error(f"--repeat: must be >= 1, got {args.repeat}")

    golds = [row["answer"] for row in load_jsonl(math500)]
    same = [boxed(g) for g in golds]
    perturbed = [boxed(perturb_answer(g)) for g in golds]
    options = {} if args.workers is None else {"workers": args.workers}
    verify = math_accuracy.configure(fast_path=False, **options)
    shortcut = math_accuracy.configure(fast_path=True, **options)

    rows = []
    shutdown_pools()
    start = time.perf_counter()
    verify([boxed("1")], answer=["1"])
    rows.append(
        {
            "measure": "math_accuracy worker start-up (fresh pool, first item)",
            "items": 1,
            "seconds": time.perf_counter() - start,
        }
    )

    for name, fn, completions, expected in [
        ("math_accuracy MATH500 gold vs gold (math-verify)", verify, same, 1.0),
        ("math_accuracy MATH500 gold vs gold (fast path)", shortcut, same, 1.0),
        ("math_accuracy MATH500 gold vs perturbed (math-verify)", verify, perturbed, 0.0),
    ]:
        seconds, scores = timed(fn, completions, golds, args.repeat, fresh=True)
        agree = sum(s == expected for s in scores)
        rows.append(
            {
                "measure": name,
                "items": len(golds),
                "seconds": seconds,
                "items_per_s": len(golds) / seconds,
                "as_expected": agree,
            }
        )

    gsm8k = args.data / "gsm8k" / "test.jsonl"
    if gsm8k.is_file():
        answers = [gold_answer_text(row["answer"]) for row in load_jsonl(gsm8k)]
        completions = [f"Step by step... The answer is {a}." for a in answers]
        seconds, scores = timed(exact_match, completions, answers, args.repeat, fresh=False)
        rows.append(
            {
                "measure": "exact_match GSM8K test gold vs gold (in process)",
                "items": len(answers),
                "seconds": seconds,
                "items_per_s": len(answers) / seconds,
                "as_expected": sum(s == 1.0 for s in scores),
            }
        )
    shutdown_pools()

    machine = {
        **machine_info(()),
        "workers": args.workers or min(2, os.cpu_count() or 1),
        "repeat": args.repeat,
    }
    print(f"machine: {json.dumps(machine)}")
    print("| measure | items | median s | items/s | scored as expected |")
    print("|---|---|---|---|---|")
    for row in rows:
        rate = f"{row['items_per_s']:.0f}" if "items_per_s" in row else "-"
        expected = f"{row['as_expected']}/{row['items']}" if "as_expected" in row else "-"
        print(f"| {row['measure']} | {row['items']} | {row['seconds']:.3f} | {rate} | {expected} |")
    if args.out is not None:
        atomic_write_json(args.out, {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

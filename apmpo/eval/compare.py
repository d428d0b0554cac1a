"""``apmpo eval compare RUN_A RUN_B``: paired per-benchmark differences between two evaluation runs.

Two runs of the same suite, protocol and problems (e.g. two checkpoints) are compared
problem by problem. For a benchmark with ``N`` problems and a metric (default Pass@1 =
avg@n), each problem ``i`` has a value in each run, ``a_i`` and ``b_i`` (for Pass@1 the
fraction of its n samples that are correct), and a paired difference
``d_i = b_i - a_i``. The reported difference is ``mean(d)`` (= B's score - A's score),
with:

- a **paired bootstrap confidence interval** over problems: ``resamples`` times
  (default 10,000), draw N problems with replacement and average their ``d_i``; the
  interval is the ``(1 - level)/2`` and ``(1 + level)/2`` percentiles of these means
  (default level 0.95). The draws come from ``numpy.random.default_rng(seed)``
  (default seed 0), so the same runs give the same interval every time. Pairing keeps
  the problem difficulty shared by both runs out of the interval, which is why it is
  much narrower than the two runs' separate error bars suggest.
- the **paired standard error** ``sd(d) / sqrt(N)`` (sample sd, ``N - 1``).
- the **average** row (the paper's "avg" column, the unweighted mean of the
  benchmarks' differences) is bootstrapped by resampling the problems of every
  benchmark independently in each draw and averaging the benchmark means.

The comparison is refused, with every difference named, when the runs differ in suite,
protocol or decoding settings (n, temperature, top_p, top_k, max_new_tokens, the
correctness threshold), rewards, prompt templates, the set of benchmarks, or a
benchmark's problems (count, problem texts and answers, checked by the fingerprint in
the summaries and problem by problem in the records). Seeds may differ.

Writes ``compare.md`` (the table), ``compare.json`` (the numbers) and ``compare.png``
(a bar chart: both runs per benchmark with their standard errors, and the paired
difference with its confidence interval).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from apmpo.eval.harness import RECORDS_FILE, SUMMARY_FILE, group_example_stats
from apmpo.eval.metrics import example_metrics, stderr
from apmpo.eval.records import RecordsFile
from apmpo.io import atomic_savefig, atomic_write_json, atomic_write_text, pyplot
from apmpo.settings import Settings, build_settings

__all__ = [
    "BenchmarkDifference",
    "Comparison",
    "CompareSettings",
    "ComparisonError",
    "EvalRun",
    "compare_runs",
    "load_run",
    "plot_comparison",
    "register",
]

_SETTINGS_COMPARED = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "correct_threshold")


class ComparisonError(ValueError):
    """Two runs that cannot be compared, or a directory that is not an evaluation run."""


class CompareSettings(Settings):
    """What a comparison reports and how its intervals are drawn (``apmpo eval compare`` flags)."""

    metric: str = "pass@1"
    """The metric compared: a metric both summaries report (pass@1 = avg@n, pass@k, maj@k)."""
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    """Confidence level of the bootstrap intervals."""
    resamples: Annotated[int, Field(ge=100)] = 10_000
    """Paired bootstrap resamples of the problems."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Seed of the bootstrap draws (the same runs and seed give the same interval)."""


@dataclass
class EvalRun:
    """An evaluation run directory: its summary and the records it counts."""

    path: Path
    """The run directory (``apmpo eval --out``)."""
    summary: dict[str, Any]
    """summary.json."""
    records: list[dict[str, Any]]
    """The records the summary counts: sample index < n, example index < the benchmark's count."""

    @property
    def label(self) -> str:
        """How the run is named in tables: its directory name."""
        return self.path.name

    def per_problem(self, metric: str) -> dict[str, list[float]]:
        """Per benchmark, the metric's value on each problem, in problem order."""
        settings = self.summary["settings"]
        stats = group_example_stats(self.records, settings["correct_threshold"], order=list(self.summary["benchmarks"]))
        return {
            name: [example_metrics(e, settings["k"], settings["maj_k"])[metric] for e in examples]
            for name, examples in stats.items()
        }


def load_run(path: str | Path) -> EvalRun:
    """Read a run directory written by ``apmpo eval --out``; ComparisonError naming what is missing."""
    path = Path(path)
    summary_file, records_file = path / SUMMARY_FILE, path / RECORDS_FILE
    if not path.is_dir():
        raise ComparisonError(f"{path}: no such directory (give the --out directory of an apmpo eval run)")
    if not summary_file.is_file():
        raise ComparisonError(
            f"{path}: no {SUMMARY_FILE}: not a finished apmpo eval run (rerun the same apmpo eval command to finish it)"
        )
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ComparisonError(f"{summary_file}: unreadable ({exc})") from None
    for key in ("benchmarks", "settings", "metrics"):
        if key not in summary:
            raise ComparisonError(f"{summary_file}: no {key!r}: not an apmpo eval summary")
    if not records_file.is_file():
        raise ComparisonError(f"{path}: no {RECORDS_FILE} (the per-sample records the comparison pairs)")
    n = summary["settings"]["n"]
    counts = {name: row["examples"] for name, row in summary["benchmarks"].items()}
    records = [
        r
        for r in RecordsFile(records_file).load(repair=False).values()
        if r["benchmark"] in counts and r["example_index"] < counts[r["benchmark"]] and r["sample_index"] < n
    ]
    for name, count in counts.items():
        have = sum(1 for r in records if r["benchmark"] == name)
        if have != count * n:
            raise ComparisonError(
                f"{records_file}: benchmark {name!r} has {have} of its {count} x {n} counted "
                "samples: the records do not match the summary"
            )
    return EvalRun(path=path, summary=summary, records=records)


def _differences(a: EvalRun, b: EvalRun, metric: str) -> list[str]:
    """Every reason the two runs cannot be compared (empty: comparable)."""
    sa, sb = a.summary, b.summary
    out: list[str] = []

    def differ(what: str, va: Any, vb: Any) -> None:
        if va != vb:
            out.append(f"{what}: A has {va!r}, B has {vb!r}")

    differ("suite", sa.get("suite_name", sa.get("suite")), sb.get("suite_name", sb.get("suite")))
    differ("protocol", (sa.get("protocol") or {}).get("name"), (sb.get("protocol") or {}).get("name"))
    for key in _SETTINGS_COMPARED:
        differ(key, sa["settings"].get(key), sb["settings"].get(key))
    names_a, names_b = list(sa["benchmarks"]), list(sb["benchmarks"])
    if set(names_a) != set(names_b):
        only_a = [n for n in names_a if n not in names_b]
        only_b = [n for n in names_b if n not in names_a]
        out.append(
            "benchmarks: "
            + "; ".join(
                part
                for part in (
                    f"only in A: {', '.join(only_a)}" if only_a else "",
                    f"only in B: {', '.join(only_b)}" if only_b else "",
                )
                if part
            )
        )
    for name in (n for n in names_a if n in names_b):
        differ(f"reward of {name}", sa.get("rewards", {}).get(name), sb.get("rewards", {}).get(name))
        differ(f"prompt of {name}", sa.get("prompts", {}).get(name), sb.get("prompts", {}).get(name))
        problem = _problem_difference(a, b, name)
        if problem:
            out.append(f"problems of {name}: {problem}")
    for run in (a, b):
        if metric not in run.summary["metrics"]:
            out.append(f"metric {metric}: {'A' if run is a else 'B'} reports only {', '.join(run.summary['metrics'])}")
    return out


def _problem_difference(a: EvalRun, b: EvalRun, name: str) -> str | None:
    """How benchmark ``name``'s problems differ between the runs (None: the same problems)."""
    count_a, count_b = a.summary["benchmarks"][name]["examples"], b.summary["benchmarks"][name]["examples"]
    if count_a != count_b:
        return f"A has {count_a} problems, B has {count_b} (different --limit or data)"

    def problems(run: EvalRun) -> dict[int, tuple]:
        return {
            r["example_index"]: (r.get("example_id"), r.get("reference")) for r in run.records if r["benchmark"] == name
        }

    pa, pb = problems(a), problems(b)
    for index in sorted(pa):
        if pa[index] != pb.get(index):
            (id_a, ref_a), (id_b, ref_b) = pa[index], pb.get(index, (None, None))
            return f"problem {index} differs (A: id {id_a!r}, answer {ref_a!r}; B: id {id_b!r}, answer {ref_b!r})"
    fa = (a.summary.get("problems") or {}).get(name, {}).get("sha256")
    fb = (b.summary.get("problems") or {}).get(name, {}).get("sha256")
    if fa and fb and fa != fb:
        return "the problem texts differ (same answers, different problem fingerprints)"
    return None


@dataclass
class BenchmarkDifference:
    """One row of a comparison: a benchmark (or the average) in both runs and their paired difference."""

    name: str
    """Benchmark name, or "average"."""
    problems: int
    """Problems paired."""
    a: float
    """Run A's score."""
    a_stderr: float | None
    """Its standard error over problems."""
    b: float
    """Run B's score."""
    b_stderr: float | None
    """Its standard error over problems."""
    difference: float
    """b - a."""
    stderr: float | None
    """Paired standard error of the difference."""
    low: float
    """Lower end of the bootstrap confidence interval."""
    high: float
    """Upper end of the bootstrap confidence interval."""

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return self.low > 0 or self.high < 0


@dataclass
class Comparison:
    """The result of :func:`compare_runs`."""

    run_a: str
    """Path of run A (the reference)."""
    run_b: str
    """Path of run B."""
    metric: str
    """The metric compared (a summary metric name, e.g. pass@1)."""
    level: float
    """Confidence level of the intervals."""
    resamples: int
    """Bootstrap resamples."""
    seed: int
    """Bootstrap seed."""
    protocol: str | None
    """The runs' protocol."""
    n: int
    """Samples per problem."""
    rows: list[BenchmarkDifference]
    """Per benchmark, then the average."""

    def to_markdown(self) -> str:
        """The comparison as a markdown table (percentages)."""
        a, b = Path(self.run_a).name, Path(self.run_b).name
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
        lines = [
            f"Comparison of `{b}` (B) against `{a}` (A): {self.metric}"
            f"{f' (avg@{self.n})' if self.metric == 'pass@1' and self.n > 1 else ''}, "
            f"protocol {self.protocol or '(none)'}, in %.",
            "",
            f"| benchmark | problems | A: {a} | B: {b} | B - A | {int(round(self.level * 100))}% CI (paired bootstrap) "
            "| paired stderr |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            mark = " *" if row.significant else ""
            lines.append(
                f"| {row.name} | {row.problems} | {pct(row.a)} ± {pct(row.a_stderr)} | {pct(row.b)} ± {pct(row.b_stderr)} "
                f"| {100 * row.difference:+.1f}{mark} | [{100 * row.low:+.1f}, {100 * row.high:+.1f}] | {pct(row.stderr)} |"
            )
        lines += [
            "",
            f"A ± x, B ± x: score ± standard error over problems. CI: {self.resamples} paired bootstrap "
            f"resamples of the problems (seed {self.seed}); * the interval excludes 0. The average row "
            "resamples every benchmark independently and averages the benchmarks (macro).",
        ]
        return "\n".join(lines)


def compare_runs(
    run_a: EvalRun,
    run_b: EvalRun,
    settings: CompareSettings | None = None,
) -> Comparison:
    """The paired comparison of B against A (see the module doc); ComparisonError naming every mismatch."""
    settings = settings or CompareSettings()
    metric, level, resamples = settings.metric, settings.confidence, settings.resamples
    problems = _differences(run_a, run_b, metric)
    if problems:
        raise ComparisonError(f"cannot compare A = {run_a.path} and B = {run_b.path}: " + "; ".join(problems))
    values_a, values_b = run_a.per_problem(metric), run_b.per_problem(metric)
    names = list(run_a.summary["benchmarks"])
    rng = np.random.default_rng(settings.seed)
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    rows, draws = [], []
    for name in names:
        xa, xb = np.asarray(values_a[name], dtype=float), np.asarray(values_b[name], dtype=float)  # [N], [N]
        d = xb - xa  # [N]
        means = _bootstrap_means(d, resamples, rng)  # [R]
        draws.append(means)
        low, high = np.quantile(means, quantiles)
        rows.append(
            BenchmarkDifference(
                name=name,
                problems=len(d),
                a=float(xa.mean()),
                a_stderr=stderr(xa.tolist()),
                b=float(xb.mean()),
                b_stderr=stderr(xb.tolist()),
                difference=float(d.mean()),
                stderr=stderr(d.tolist()),
                low=float(low),
                high=float(high),
            )
        )
    if len(names) > 1:
        macro = np.mean(draws, axis=0)  # [R]
        low, high = np.quantile(macro, quantiles)

        def combined(errors: list[float | None]) -> float | None:
            known = [e for e in errors if e is not None]
            return None if len(known) < len(errors) else math.sqrt(sum(e * e for e in known)) / len(errors)

        rows.append(
            BenchmarkDifference(
                name="average",
                problems=sum(r.problems for r in rows),
                a=float(np.mean([r.a for r in rows])),
                a_stderr=combined([r.a_stderr for r in rows]),
                b=float(np.mean([r.b for r in rows])),
                b_stderr=combined([r.b_stderr for r in rows]),
                difference=float(np.mean([r.difference for r in rows])),
                stderr=combined([r.stderr for r in rows]),
                low=float(low),
                high=float(high),
            )
        )
    return Comparison(
        run_a=str(run_a.path),
        run_b=str(run_b.path),
        metric=metric,
        level=level,
        resamples=resamples,
        seed=settings.seed,
        protocol=(run_a.summary.get("protocol") or {}).get("name"),
        n=int(run_a.summary["settings"]["n"]),
        rows=rows,
    )


def _bootstrap_means(d: np.ndarray, resamples: int, rng: np.random.Generator, chunk: int = 2_000) -> np.ndarray:
    """Means of ``resamples`` resamples of ``d`` drawn with replacement, in chunks to bound memory."""
    out = np.empty(resamples)  # [R]
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        index = rng.integers(0, len(d), size=(size, len(d)))  # [size, N]
        out[start : start + size] = d[index].mean(axis=1)
    return out


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """A PNG: left, both runs per benchmark (± stderr); right, B - A with its confidence interval."""
    plt = pyplot()
    rows = comparison.rows
    names = [r.name for r in rows]
    x = np.arange(len(rows))
    a_label, b_label = f"A: {Path(comparison.run_a).name}", f"B: {Path(comparison.run_b).name}"
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(9.0, 1.6 * len(rows) + 5), 4.2), gridspec_kw={"width_ratios": [3, 2]}
    )
    width = 0.38
    tops = []
    for offset, label, values, errors, color in (
        (-width / 2, a_label, [r.a for r in rows], [r.a_stderr for r in rows], "#9aa5b1"),
        (width / 2, b_label, [r.b for r in rows], [r.b_stderr for r in rows], "#2f6db5"),
    ):
        heights, spreads = [100 * v for v in values], [0.0 if e is None else 100 * e for e in errors]
        bars = left.bar(x + offset, heights, width, label=label, color=color, yerr=spreads, capsize=3)
        left.bar_label(bars, labels=[f"{h:.1f}" for h in heights], fontsize=7, padding=2)
        tops += [h + e for h, e in zip(heights, spreads)]
    left.set_ylim(0, max(5.0, 1.2 * max(tops)))
    left.set_xticks(x, names, rotation=30, ha="right")
    metric = comparison.metric + (
        f" (avg@{comparison.n})" if comparison.metric == "pass@1" and comparison.n > 1 else ""
    )
    left.set_ylabel(f"{metric}, %")
    left.set_title("score ± standard error over problems")
    left.legend(fontsize=8, loc="upper left")
    diffs = [100 * r.difference for r in rows]
    spans = [[100 * (r.difference - r.low) for r in rows], [100 * (r.high - r.difference) for r in rows]]
    colors = [
        "#2e8b57" if r.significant and r.difference > 0 else "#c0392b" if r.significant else "#7f8c8d" for r in rows
    ]
    bars = right.bar(x, diffs, 0.6, yerr=spans, capsize=4, color=colors)
    right.bar_label(bars, labels=[f"{d:+.1f}" for d in diffs], fontsize=7, padding=2)
    reach = max([2.0] + [100 * abs(v) for r in rows for v in (r.low, r.high)])
    right.set_ylim(-1.25 * reach, 1.25 * reach)
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(x, names, rotation=30, ha="right")
    right.set_ylabel("B - A, percentage points")
    right.set_title(f"paired difference, {int(round(100 * comparison.level))}% bootstrap CI")
    fig.suptitle(f"{b_label} vs {a_label}; protocol {comparison.protocol or '(none)'}, n = {comparison.n}", fontsize=10)
    fig.tight_layout()
    written = atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return written


# ----------------------------------------------------------------------------- command line

_DESCRIPTION = """\
Compare two evaluation runs (apmpo eval --out directories) of the same suite, protocol and
problems, e.g. two checkpoints: per benchmark, B - A with a paired bootstrap confidence
interval over problems and the paired standard error; writes compare.md, compare.json and
compare.png. Runs that differ in suite, protocol, decoding settings, rewards, prompts or
problems are refused, naming every difference.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The compare command's arguments."""
    parser.add_argument("run_a", metavar="RUN_A", help="the reference run's directory (A)")
    parser.add_argument("run_b", metavar="RUN_B", help="the run compared against it (B); differences are B - A")
    parser.add_argument("--metric", help="the metric compared: pass@1 (default; = avg@n), pass@k, maj@k")
    parser.add_argument("--confidence", type=float, help="confidence level of the intervals, in (0, 1) (default 0.95)")
    parser.add_argument("--resamples", type=int, help="bootstrap resamples, >= 100 (default 10000)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where to write compare.md/.json/.png (default: compare_<A>_vs_<B> in the current directory)",
    )


def _settings(args: argparse.Namespace) -> CompareSettings:
    """The flags given, over the defaults; a problem names the flag (ConfigError)."""
    given = {name: getattr(args, name) for name in CompareSettings.model_fields if getattr(args, name) is not None}
    origins = {name: f"--{name} {value}" for name, value in given.items()}
    return build_settings(CompareSettings, given, origins=origins)


def run(args: argparse.Namespace) -> int:
    """Run the comparison for parsed arguments; exit status 2 with a message on bad input."""
    try:
        settings = _settings(args)
        run_a, run_b = load_run(args.run_a), load_run(args.run_b)
        comparison = compare_runs(run_a, run_b, settings)
    except ValueError as exc:  # ComparisonError and ConfigError included
        print(f"apmpo eval compare: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(f"compare_{run_a.label}_vs_{run_b.label}")
    out.mkdir(parents=True, exist_ok=True)
    table = comparison.to_markdown()
    atomic_write_text(out / "compare.md", table + "\n")
    atomic_write_json(
        out / "compare.json",
        {**asdict(comparison), "rows": [{**asdict(r), "significant": r.significant} for r in comparison.rows]},
    )
    plot_comparison(comparison, out / "compare.png")
    print(table)
    print(f"\ntable: {out / 'compare.md'}\nchart: {out / 'compare.png'}\nnumbers: {out / 'compare.json'}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``compare`` to a subparsers object (the ``apmpo eval`` command's)."""
    parser = subparsers.add_parser(
        "compare",
        help="paired comparison of two evaluation runs",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run, handler=run)
    return parser

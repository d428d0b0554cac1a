"""Report tables of an evaluation summary: the paper's layout, and the run's timing line.

:func:`paper_table` lays a summary out as the papers do: one column per benchmark in
the suite's order (MATH500, AIME24, AIME25, AMC23, Minerva, OlympiadBench for the math
suite), then the macro average (when there is more than one); one row per metric (Pass@1 = avg@n, pass@k, maj@k),
each cell ``mean ± standard error`` in percent (the standard error over problems of
:mod:`apmpo.eval.metrics`). A suite benchmark that was not evaluated (e.g. not shipped)
keeps its column, marked ``n/a``, and the average says over how many benchmarks it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["format_duration", "paper_table", "run_line"]


def _cell(row: Mapping[str, Any], metric: str) -> str:
    value = row.get(metric)
    if value is None:
        return "-"
    error = row.get(f"{metric}_stderr")
    return f"{100 * value:.1f}" + ("" if error is None else f" ± {100 * error:.1f}")


def _metric_label(metric: str, n: int | None) -> str:
    if metric == "pass@1" and n is not None and n > 1:
        return f"pass@1 (avg@{n})"
    return metric


def paper_table(summary: Mapping[str, Any], *, markdown: bool = False) -> str:
    """The summary's metrics per benchmark and averaged, ``mean ± stderr`` in %, as text or markdown."""
    rows = summary["benchmarks"]
    order = list(summary.get("suite_benchmarks") or rows)
    order += [name for name in rows if name not in order]
    missing = {name: reason for name, reason in (summary.get("not_evaluated") or {}).items() if name not in rows}
    average = "average" if not missing else f"average ({len(rows)} of {len(rows) + len(missing)})"
    averaged = len(order) > 1  # one benchmark: its column is the average
    n = (summary.get("settings") or {}).get("n")
    header = ["metric", *order, *([average] if averaged else [])]
    body = []
    for metric in summary["metrics"]:
        cells = [_cell(rows[name], metric) if name in rows else "n/a" for name in order]
        body.append([_metric_label(metric, n), *cells, *([_cell(summary["overall"], metric)] if averaged else [])])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
        lines = [
            "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
            for r in [header, *body]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
    note = "metrics in %, mean ± standard error over problems"
    protocol = summary.get("protocol") or {}
    if protocol.get("name"):
        note = f"protocol {protocol['name']}; {note}"
    lines.append(f"({note})" if not markdown else f"\n{note[0].upper()}{note[1:]}.")
    for name, reason in missing.items():
        lines.append(f"{'- ' if markdown else ''}{name}: not evaluated: {reason}")
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """``83.2`` -> ``"1m23s"``; under a minute: ``"41.5s"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def run_line(summary: Mapping[str, Any]) -> str:
    """One line on the run's cost: wall time, samples and tokens generated, and their rates."""
    run = summary.get("run") or {}
    wall = float(run.get("wall_seconds") or 0.0)
    generated = int(run.get("samples_generated") or 0)
    tokens = int(run.get("tokens_generated") or 0)
    text = f"wall time {format_duration(wall)}: {generated} samples generated"
    if wall > 0 and generated:
        text += f" ({generated / wall:.2f} samples/s), {tokens} tokens ({tokens / wall:.1f} tokens/s)"
    resumed = int(run.get("samples_resumed") or 0)
    if resumed:
        text += f", {resumed} resumed from earlier runs"
    return text

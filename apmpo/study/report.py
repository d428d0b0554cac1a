"""The report of a study: results tables (Markdown + CSV), curves (PNG), study.json and results.md.

Everything here is computed from the finished runs' ``metrics.jsonl`` (see
:mod:`apmpo.study.runner`); nothing is typed by hand. Per run:

- ``before``/``final``: held-out accuracy (greedy Pass@1) at step 0 and at the last step;
- ``best``: the highest held-out accuracy over the evaluations after step 0 (selected on
  the held-out set itself, so optimistic; "final" is the unbiased number);
- ``late_*``: the mean of a per-step training metric (token entropy, p, eps_high, clip
  fractions, response length) over the last ``report.late_fraction`` of the steps;
- ``generated_tokens``: tokens sampled over the whole run (the rollout budget: DAPO's
  dynamic sampling draws more than the other arms).

Per arm: mean and 95% Student-t interval over its seeds; paired differences against
the baseline over the seeds both ran (:mod:`apmpo.study.stats`).

Power (:func:`power_figures`): for every paired comparison, the minimum detectable
difference at the study's power (two-sided paired t-test, alpha = 0.05, noncentral t;
:mod:`apmpo.study.stats`) given the observed paired SD and number of pairs, the
power to detect the paper's own difference (where it reports one) and a reference
difference (2 points), and the seeds that reference would need.

"What holds here" checks the paper's qualitative claims (``CLAIMS``; our extension's
comparisons are marked) against these numbers, one verdict per claim, from the paired
95% interval of the difference that the claim is about, said plainly as supports (holds) /
contradicts (reversed) / cannot tell (everything else), with its power, in a sentence
generated from the numbers (:func:`claim_sentence`): **holds** (the interval lies on the claimed side of 0), **same direction, not
significant** (the mean is on the claimed side, the interval crosses 0), **not
observed** (the mean is on the other side, the interval crosses 0), **reversed** (the
interval lies on the other side), **no difference** (identical at every paired seed),
**not testable** (fewer than two paired seeds, or a zero-width interval: every paired
difference equal and non-zero, which with few seeds and a discrete accuracy is a
coincidence, not evidence).
Claims name the arms by the canonical names used in the packaged study configs
(apmpo, grpo, dapo, gmpo, pmpo_only, fac_only, fss_mean, fss_inverse_std, p_linear,
apmpo_group); a claim whose arms are absent is listed as not checked.

Curves (:func:`curve_stats`): per arm and step, the mean over seeds with a 95% Student-t
interval over seeds (each run's training series smoothed first); the mechanism figures
plot the gradient norms, the spread of the mini-batch gradients, the clip fractions, the
entropy, p and eps_ada this way.

The per-step token metrics are the trainer's: entropy and clip fractions are averaged
over the responses that were trained on (with beta = 0 the trainer skips responses
whose advantage is exactly 0), the same rule for every arm.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from apmpo.io import atomic_savefig, atomic_write_text, pyplot
from apmpo.provenance import machine_info
from apmpo.study.config import StudyConfig
from apmpo.study.runs import PlannedRun, RunRecord, StudyResult
from apmpo.study.stats import (
    MeanCI,
    mean_ci,
    minimum_detectable_difference,
    paired_difference,
    paired_t_power,
    seeds_needed_or_none,
)
from apmpo.trainer.config import CONFIG_DIR

__all__ = [
    "CLAIMS",
    "CURVE_PANELS",
    "MECHANISM_PANELS",
    "METRIC_UNITS",
    "RUN_METRICS",
    "Claim",
    "ClaimSpec",
    "Curve",
    "PowerFigures",
    "StudyTables",
    "check_claim",
    "check_claims",
    "claim_sentence",
    "compute_tables",
    "curve_stats",
    "power_figures",
    "power_text",
    "verdict",
    "write_report",
]

LATE_METRICS = (
    "entropy",
    "p",
    "eps_high",
    "clip_frac_low",
    "clip_frac_high",
    "response_length",
    "grad_norm",
    "grad_var_ratio",
)
"""Training metrics whose late-training means are per-run scalars (late_<name>)."""

RUN_METRICS = ("initial", "final", "best", "gain", *(f"late_{k}" for k in LATE_METRICS), "generated_tokens")
"""Per-run scalars reported (see the module docstring)."""

PAIRED_METRICS = ("final", "best", "late_entropy")
"""Metrics whose paired differences against the baseline are reported."""

CURVE_PANELS = (
    ("eval:accuracy", "held-out accuracy (greedy)"),
    ("accuracy", "training-rollout accuracy (sampled)"),
    ("adv_zero_frac", "responses with A = 0 (all-equal groups)"),
    ("response_length", "response length (tokens)"),
)
"""(metric, title) of each panel of the outcome figures; "eval:" marks held-out evaluations."""

MECHANISM_PANELS = (
    ("grad_norm", "gradient norm before clipping (mean over updates)"),
    ("grad_norm_max", "gradient norm before clipping (max over updates)"),
    ("grad_var_ratio", "spread of the mini-batch gradients (grad_var_ratio)"),
    ("entropy", "token entropy (nats)"),
    ("clip_frac_low", "clip fraction, lower bound"),
    ("clip_frac_high", "clip fraction, upper bound"),
    ("p", "power-mean exponent p"),
    ("eps_high", "upper clip eps_high (eps_ada)"),
)
"""(metric, title) of each panel of the mechanism figures (apmpo.trainer.update_stats defines the gradient ones)."""


# --------------------------------------------------------------------------- numbers


def _run_values(record: RunRecord, late_fraction: float) -> dict[str, float | None]:
    values: dict[str, float | None] = {"initial": record.initial, "final": record.final, "best": record.best}
    values["gain"] = None if record.initial is None or record.final is None else record.final - record.initial
    for key in LATE_METRICS:
        values[f"late_{key}"] = record.late_mean(key, late_fraction)
    tokens = [r["generated_tokens"] for r in record.train if isinstance(r.get("generated_tokens"), (int, float))]
    values["generated_tokens"] = float(sum(tokens)) if tokens else None
    return values


@dataclass
class StudyTables:
    """The numbers of a study."""

    arms: list[str]
    """Arms with results, in config order."""
    groups: dict[str, str]
    """Arm -> "main" / "ablation"."""
    per_run: dict[str, dict[int, dict[str, float | None]]]
    """Arm -> seed -> metric -> value."""
    summary: dict[str, dict[str, MeanCI | None]]
    """Arm -> metric -> mean and interval over seeds (None: the metric was never logged)."""
    baseline: str
    """The baseline arm."""
    paired: dict[str, dict[str, MeanCI | None]]
    """Arm -> metric -> paired difference arm - baseline (None: no common seed)."""

    def values(self, arm: str, metric: str) -> dict[int, float]:
        """Seed -> value of ``metric`` for ``arm`` (seeds where it is defined)."""
        return {s: value for s, v in self.per_run.get(arm, {}).items() if (value := v.get(metric)) is not None}

    def diff(self, a: str, b: str, metric: str) -> MeanCI | None:
        """Paired difference a - b of ``metric`` over their common seeds."""
        return paired_difference(self.values(a, metric), self.values(b, metric))


def compute_tables(study: StudyConfig, records: Sequence[RunRecord]) -> StudyTables:
    """Per-run values, per-arm means with intervals, and paired differences vs the baseline."""
    per_run: dict[str, dict[int, dict[str, float | None]]] = {}
    for record in records:
        per_run.setdefault(record.arm, {})[record.seed] = _run_values(record, study.report.late_fraction)
    arms = [a for a in study.arms if a in per_run]
    groups = {a: str(study.arms[a].group) for a in arms}
    tables = StudyTables(arms, groups, per_run, {}, study.baseline, {})
    for arm in arms:
        tables.summary[arm] = {}
        for metric in RUN_METRICS:
            vals = list(tables.values(arm, metric).values())
            tables.summary[arm][metric] = mean_ci(vals) if vals else None
        tables.paired[arm] = (
            {m: tables.diff(arm, study.baseline, m) for m in PAIRED_METRICS} if arm != study.baseline else {}
        )
    return tables


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class ClaimSpec:
    """A comparative claim: metric(a) > metric(b), paired over seeds."""

    a: str
    """The arm claimed to be higher."""
    b: str
    """The arm it is compared with."""
    metric: str
    """The per-run metric compared (a key of RUN_METRICS)."""
    text: str
    """What the paper says, as a comparison."""
    paper_difference: float | None = None
    """The difference the paper reports, in display units (points), where it reports one."""
    extension: bool = False
    """True for our own extension's comparisons (not a claim of the paper)."""


METRIC_UNITS = {"final": (100.0, "pts", 1), "best": (100.0, "pts", 1), "late_entropy": (1.0, "nats", 3)}
"""metric -> (display scale, unit, digits) of the compared metrics."""

_PAPER_TABLE = "the paper's main table, Qwen2.5-Math-1.5B, math average (docs/spec.md)"
CLAIMS: tuple[ClaimSpec, ...] = (
    *(
        ClaimSpec("apmpo", base, metric, f"APMPO beats {base.upper()} ({metric} held-out accuracy)", size)
        for base, size in (("grpo", 4.6), ("dapo", 2.1), ("gmpo", 2.7))
        for metric in ("final", "best")
    ),
    ClaimSpec(
        "apmpo",
        "grpo",
        "late_entropy",
        "entropy decays slower under APMPO than under GRPO (late-training entropy APMPO > GRPO)",
    ),
    ClaimSpec(
        "gmpo",
        "apmpo",
        "late_entropy",
        "entropy decays faster under APMPO than under GMPO (late-training entropy GMPO > APMPO)",
    ),
    ClaimSpec("pmpo_only", "grpo", "final", "PMPO alone (fixed clip) improves on GRPO"),
    ClaimSpec("fac_only", "grpo", "final", "FAC alone (p = 1) improves on GRPO"),
    ClaimSpec("pmpo_only", "fac_only", "final", "PMPO gives more of the gain than FAC (PMPO-only > FAC-only)"),
    ClaimSpec("apmpo", "pmpo_only", "final", "both together beat PMPO alone (APMPO > PMPO-only)"),
    ClaimSpec("apmpo", "fac_only", "final", "both together beat FAC alone (APMPO > FAC-only)"),
    ClaimSpec("apmpo", "fss_mean", "final", "FSS as mean/std beats FSS from the mean only"),
    ClaimSpec("apmpo", "fss_inverse_std", "final", "FSS as mean/std beats FSS from 1/std only"),
    ClaimSpec("apmpo", "p_linear", "final", "the exponential p schedule beats the linear one"),
    ClaimSpec(
        "apmpo_group",
        "apmpo",
        "final",
        "per-prompt APMPO beats batch APMPO (our extension, not the paper's claim)",
        extension=True,
    ),
    ClaimSpec(
        "apmpo_group",
        "grpo",
        "final",
        "per-prompt APMPO beats GRPO (our extension, not the paper's claim)",
        extension=True,
    ),
)
"""The comparisons the report checks, in report order."""
CLAIMS_SOURCE = _PAPER_TABLE
"""Where the paper's differences (ClaimSpec.paper_difference) come from."""


@dataclass
class Claim:
    """One comparative claim checked against the study's numbers."""

    claim: str
    """What the paper says, as a comparison."""
    verdict: str
    """holds / same direction, not significant / not observed / reversed / no difference / not testable / not checked."""
    evidence: str
    """The numbers behind the verdict."""
    a: str = ""
    """The arm claimed to be higher."""
    b: str = ""
    """The arm it is compared with."""
    metric: str = ""
    """The per-run metric compared."""
    ci: MeanCI | None = None
    """The paired difference a - b (in the metric's own unit) with its 95% interval."""
    power: PowerFigures | None = None
    """What the comparison could detect (None: fewer than two pairs or no spread)."""
    spec: ClaimSpec | None = None
    """The claim checked."""

    @property
    def plain(self) -> str:
        """supports / contradicts / cannot tell / not checked: the verdict in plain words."""
        return PLAIN_VERDICTS.get(self.verdict, "cannot tell")


PLAIN_VERDICTS = {"holds": "supports", "reversed": "contradicts", "not checked": "not checked"}
"""Detailed verdict -> plain verdict (everything else: "cannot tell")."""


@dataclass(frozen=True)
class PowerFigures:
    """Power of one paired comparison (two-sided paired t-test, alpha = 0.05, noncentral t), in display units."""

    n: int
    """Pairs (seeds both arms ran)."""
    sd: float
    """Standard deviation of the paired differences."""
    mde: float
    """Minimum detectable difference at the target power."""
    power: float
    """The target power (e.g. 0.8)."""
    reference: float | None
    """The reference difference (e.g. 2 points; None for metrics without one)."""
    power_at_reference: float | None
    """Power to detect the reference difference with these n pairs."""
    seeds_for_reference: int | None
    """Pairs needed to detect the reference difference at the target power."""
    paper_difference: float | None = None
    """The paper's difference, if it reports one."""
    power_at_paper: float | None = None
    """Power to detect the paper's difference with these n pairs."""


def power_figures(
    ci: MeanCI | None,
    scale: float,
    *,
    power: float = 0.8,
    reference: float | None = None,
    paper_difference: float | None = None,
) -> PowerFigures | None:
    """Power of the paired comparison behind ``ci`` (differences in the metric's unit; ``scale`` to display units).

    None when it is undefined: fewer than two pairs, or every paired difference equal (no spread).
    """
    if ci is None or ci.std is None or ci.n < 2 or not ci.std * scale > 1e-12:
        return None
    sd = ci.std * scale
    ref_power = None if reference is None else paired_t_power(reference, sd, ci.n)
    ref_seeds = None if reference is None else seeds_needed_or_none(reference, sd, power)
    return PowerFigures(
        ci.n,
        sd,
        minimum_detectable_difference(sd, ci.n, power),
        power,
        reference,
        ref_power,
        ref_seeds,
        paper_difference,
        None if paper_difference is None else paired_t_power(paper_difference, sd, ci.n),
    )


def verdict(ci: MeanCI | None) -> str:
    """Verdict on "the difference is > 0" from its paired interval (see the module docstring)."""
    if ci is None or ci.half_width is None:
        return "not testable"
    if ci.half_width <= 1e-12 * max(1.0, abs(ci.mean)):  # every difference equal (up to rounding): degenerate
        return "no difference" if abs(ci.mean) <= 1e-12 else "not testable"
    if ci.mean - ci.half_width > 0:
        return "holds"
    if ci.mean + ci.half_width < 0:
        return "reversed"
    return "same direction, not significant" if ci.mean > 0 else "not observed"


def _signed(ci: MeanCI | None, scale: float = 100.0, digits: int = 1) -> str:
    """ "+1.2 [-3.4, +5.8]": a difference with its interval (scaled)."""
    return _level(ci, scale, digits, signed=True)


def _pts(ci: MeanCI | None, scale: float = 100.0, digits: int = 1, unit: str = " pts") -> str:
    """A difference with its unit, interval and number of pairs (for the evidence column)."""
    if ci is None:
        return "n/a"
    return f"{_signed(ci, scale, digits)}{unit}, n = {ci.n}"


def _level(ci: MeanCI | None, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
    """ "12.3 [10.1, 14.5]": a mean with its interval (scaled); ``signed`` for a difference ("+1.2 [...]")."""
    if ci is None:
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    mean = format(scale * ci.mean, spec)
    if ci.half_width is None:
        return f"{mean} (one seed, no interval)" if signed else mean
    low, high = ci.mean - ci.half_width, ci.mean + ci.half_width
    return f"{mean} [{format(scale * low, spec)}, {format(scale * high, spec)}]"


def check_claim(tables: StudyTables, spec: ClaimSpec, *, power: float = 0.8, reference: float | None = 2.0) -> Claim:
    """The claim "metric(a) > metric(b)" checked on the paired difference, with its power.

    ``reference``: the difference (display units) whose power and seed count are reported for the
    accuracy metrics (the entropy has none).
    """
    a, b, metric = spec.a, spec.b, spec.metric
    scale, unit, digits = METRIC_UNITS[metric]
    missing = [x for x in (a, b) if x not in tables.per_run]
    if missing:
        return Claim(spec.text, "not checked", f"arm {', '.join(missing)} not in this study", a, b, metric, spec=spec)
    va, vb = tables.values(a, metric), tables.values(b, metric)
    common = sorted(set(va) & set(vb))
    if not common:
        return Claim(
            spec.text, "not testable", f"no seed where both {a} and {b} logged {metric}", a, b, metric, spec=spec
        )
    ci = paired_difference(va, vb)
    ma, mb = (sum(v[s] for s in common) / len(common) for v in (va, vb))
    evidence = (
        f"{a} - {b} = {_pts(ci, scale, digits, ' ' + unit)} paired seeds; means over those seeds: "
        f"{a} {scale * ma:.{digits}f}, {b} {scale * mb:.{digits}f}"
    )
    figures = power_figures(
        ci, scale, power=power, reference=reference if unit == "pts" else None, paper_difference=spec.paper_difference
    )
    return Claim(spec.text, verdict(ci), evidence, a, b, metric, ci, figures, spec)


def check_claims(tables: StudyTables, *, power: float = 0.8, reference: float | None = 2.0) -> list[Claim]:
    """Every claim of ``CLAIMS``, each with a verdict from the paired interval and its power."""
    return [check_claim(tables, spec, power=power, reference=reference) for spec in CLAIMS]


def _num(value: float, digits: int, signed: bool = False) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def power_text(figures: PowerFigures | None, unit: str, digits: int) -> str:
    """One clause: what the comparison could detect (for tables and sentences)."""
    if figures is None:
        return "power undefined (fewer than two paired seeds, or no spread between them)"
    text = (
        f"detects {_num(figures.mde, digits)} {unit} with {figures.power:.0%} power "
        f"(paired SD {_num(figures.sd, digits)}, n = {figures.n})"
    )
    if figures.paper_difference is not None:
        text += f"; power {figures.power_at_paper:.0%} for the paper's {_num(figures.paper_difference, 1, True)}"
    if figures.reference is not None:
        need = "more than 100000" if figures.seeds_for_reference is None else str(figures.seeds_for_reference)
        text += (
            f"; power {figures.power_at_reference:.0%} for {_num(figures.reference, 1)} {unit}, which would need "
            f"{need} seeds for {figures.power:.0%}"
        )
    return text


def claim_sentence(claim: Claim) -> str:
    """The claim in plain words: supports / contradicts / cannot tell, the evidence and the power (generated)."""
    spec = claim.spec
    scale, unit, digits = METRIC_UNITS.get(claim.metric, (1.0, "", 3))
    subject = f"{claim.claim}" + (
        f" [paper: {_num(spec.paper_difference, 1, True)} {unit}]"
        if spec is not None and spec.paper_difference is not None
        else ""
    )
    if claim.verdict == "not checked":
        return f"{subject}: **not checked** here ({claim.evidence})."
    if claim.ci is None or claim.ci.half_width is None:
        return (
            f"{subject}: **cannot tell** (not testable: {claim.evidence if claim.ci is None else 'one paired seed'})."
        )
    ci, half = claim.ci, claim.ci.half_width
    low, high = ci.mean - half, ci.mean + half
    diff = (
        f"{claim.a} - {claim.b} = {_num(scale * ci.mean, digits, True)} {unit}, 95% interval "
        f"[{_num(scale * low, digits, True)}, {_num(scale * high, digits, True)}] over {ci.n} paired seeds"
    )
    if claim.verdict == "holds":
        head = f"**supports** it: {diff}, entirely above 0"
    elif claim.verdict == "reversed":
        head = f"**contradicts** it: {diff}, entirely below 0"
    elif claim.verdict == "no difference":
        head = f"**cannot tell**: the two arms gave identical results at every paired seed ({diff})"
    elif claim.verdict == "not testable":
        head = f"**cannot tell**: every paired difference is the same, so there is no spread to test ({diff})"
    else:
        side = "on the claimed side" if ci.mean > 0 else "on the other side"
        head = f"**cannot tell**: {diff}, which includes 0 (the mean is {side})"
    extra = ""
    if (
        spec is not None
        and spec.paper_difference is not None
        and claim.verdict != "reversed"
        and scale * high < spec.paper_difference
    ):
        extra = (
            f"; the interval excludes the paper's {_num(spec.paper_difference, 1, True)} {unit}, so an effect "
            "that large is ruled out here"
        )
    return f"{subject}: {head}{extra}. Power: this comparison {power_text(claim.power, unit, digits)}."


def _entropy_order(tables: StudyTables) -> str | None:
    entropy = {a: ci for a in ("grpo", "apmpo", "gmpo") if (ci := tables.summary.get(a, {}).get("late_entropy"))}
    if len(entropy) < 3:
        return None
    ordered = sorted(entropy, key=lambda a: entropy[a].mean)
    return " < ".join(f"{a.upper()} ({entropy[a].mean:.3f})" for a in ordered)


def _find(claims: list[Claim], a: str, b: str, metric: str) -> Claim | None:
    return next((c for c in claims if (c.a, c.b, c.metric) == (a, b, metric) and c.verdict != "not checked"), None)


def _headline(tables: StudyTables, claims: list[Claim]) -> list[str]:
    """The summary bullets of "What holds here", each computed from the tables and verdicts."""
    lines = []
    gains = {a: gain for a in tables.arms if (gain := tables.summary[a]["gain"]) is not None}
    if gains:
        lo, hi = min(gains, key=lambda a: gains[a].mean), max(gains, key=lambda a: gains[a].mean)
        improved = [a for a, g in gains.items() if verdict(g) == "holds"]
        lines.append(
            f"RL from the common starting model: mean held-out gain from {100 * gains[lo].mean:+.1f} points "
            f"({lo}) to {100 * gains[hi].mean:+.1f} points ({hi}); the gain's 95% interval is above 0 for "
            f"{len(improved)} of {len(gains)} arms."
        )
    base_tokens = tables.summary.get(tables.baseline, {}).get("generated_tokens")
    if base_tokens is not None and base_tokens.mean > 0:
        for arm in tables.arms:
            tokens = tables.summary[arm]["generated_tokens"]
            if tokens is not None and abs(tokens.mean / base_tokens.mean - 1) > 0.1:
                lines.append(
                    f"{arm.upper()} sampled {tokens.mean / base_tokens.mean:.2f}x the completion tokens of "
                    f"{tables.baseline.upper()} (its rollout budget differs, e.g. dynamic sampling): compare "
                    "its accuracy with that in mind."
                )
    final = [c for b in ("grpo", "dapo", "gmpo") if (c := _find(claims, "apmpo", b, "final")) is not None]
    beaten = [c.b.upper() for c in final if c.verdict == "holds"]
    not_beaten = [c for c in final if c.verdict != "holds"]
    if beaten:
        lines.append(f"APMPO beats {', '.join(beaten)} on final held-out accuracy with a paired 95% interval above 0.")
    if not_beaten:
        lines.append(
            f"APMPO does **not** beat {', '.join(c.b.upper() for c in not_beaten)} on final held-out accuracy "
            f"here ({'; '.join(f'vs {c.b.upper()}: {c.verdict}' for c in not_beaten)})."
        )
    order = _entropy_order(tables)
    if order:
        slower, faster = _find(claims, "apmpo", "grpo", "late_entropy"), _find(claims, "gmpo", "apmpo", "late_entropy")
        lines.append(
            f"Entropy: observed late-training order (mean over seeds) {order}; the paper's order is "
            f"GRPO < APMPO < GMPO. APMPO above GRPO: {slower.verdict if slower else 'not checked'}; "
            f"GMPO above APMPO: {faster.verdict if faster else 'not checked'}."
        )
    pmpo, fac = tables.paired.get("pmpo_only", {}).get("final"), tables.paired.get("fac_only", {}).get("final")
    versus = _find(claims, "pmpo_only", "fac_only", "final")
    if pmpo is not None and fac is not None and versus is not None:
        lines.append(
            f"Components: PMPO alone vs {tables.baseline.upper()} {_signed(pmpo)} points, FAC alone "
            f"{_signed(fac)} points (final accuracy, paired); PMPO-only above FAC-only: {versus.verdict}."
        )
    return lines


# --------------------------------------------------------------------------- curves


def _moving_average(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return list(values)
    half = window // 2
    return [
        sum(values[max(0, i - half) : i + half + 1]) / len(values[max(0, i - half) : i + half + 1])
        for i in range(len(values))
    ]


@dataclass
class Curve:
    """One arm's curve of one metric over its seeds: per step, the mean and 95% t-interval over seeds."""

    steps: list[int]
    """Steps where at least one seed logged the metric."""
    mean: list[float]
    """Mean over the seeds at each step."""
    low: list[float]
    """Lower end of the 95% Student-t interval over seeds (= mean with one seed)."""
    high: list[float]
    """Upper end of the interval."""
    seeds: list[int]
    """Seeds counted at each step."""


def curve_stats(records: Sequence[Any], key: str, smooth: int = 1) -> dict[str, Curve]:
    """Arm -> Curve of one metric: each run's series (moving average over ``smooth`` steps for training
    metrics; held-out "eval:" points as they are), then the mean and 95% t-interval over seeds per step."""
    by_arm: dict[str, dict[int, list[float]]] = {}
    for record in records:
        if key.startswith("eval:"):
            points = sorted(record.evals.items())
        else:
            raw = [(int(r["step"]), float(r[key])) for r in record.train if isinstance(r.get(key), (int, float))]
            points = list(zip([x for x, _ in raw], _moving_average([v for _, v in raw], smooth)))
        for step, value in points:
            by_arm.setdefault(record.arm, {}).setdefault(int(step), []).append(float(value))
    out = {}
    for arm, steps in by_arm.items():
        xs = sorted(steps)
        cis = [mean_ci(steps[x]) for x in xs]
        out[arm] = Curve(
            xs,
            [c.mean for c in cis],
            [c.mean if c.low is None else c.low for c in cis],
            [c.mean if c.high is None else c.high for c in cis],
            [c.n for c in cis],
        )
    return out


def _colors(arms: Sequence[str]) -> dict[str, Any]:
    # heavy (matplotlib): imported only to draw
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {arm: cmap(i % 10) for i, arm in enumerate(arms)}


def plot_curves(
    records: Sequence[RunRecord],
    arms: Sequence[str],
    path: Path,
    *,
    title: str,
    smooth: int,
    colors: dict[str, Any],
    panels: Sequence[tuple[str, str]] = CURVE_PANELS,
) -> Path:
    """One panel per (metric, title): per arm, the mean over seeds per step with its 95% t-interval band
    (training metrics: each run smoothed by a ``smooth``-step moving average first)."""
    plt = pyplot()

    chosen = [r for r in records if r.arm in arms]
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.75 * rows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        curves = curve_stats(chosen, key, 1 if key.startswith("eval:") else smooth)
        for arm in arms:
            if arm not in curves:
                continue
            c = curves[arm]
            style = dict(marker="o", ms=3) if key.startswith("eval:") else {}
            ax.plot(c.steps, c.mean, color=colors[arm], label=f"{arm} (n={max(c.seeds)})", linewidth=1.4, **style)
            ax.fill_between(c.steps, c.low, c.high, color=colors[arm], alpha=0.15, linewidth=0)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    note = "mean over seeds with its 95% t-interval band"
    if smooth > 1:
        note += f"; training metrics: each run smoothed by a {smooth}-step moving average first"
    fig.suptitle(f"{title}\n{note}", fontsize=11)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return path


def plot_paired(tables: StudyTables, path: Path, *, title: str, colors: dict[str, Any]) -> Path:
    """Forest plot: paired difference vs the baseline (final and best held-out accuracy) with 95% intervals."""
    plt = pyplot()

    arms = [a for a in tables.arms if a != tables.baseline]
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(len(arms), 2) + 1.8))
    for row, arm in enumerate(reversed(arms)):
        for offset, metric, marker in ((0.15, "final", "o"), (-0.15, "best", "s")):
            ci = tables.paired[arm].get(metric)
            if ci is None:
                continue
            err = 0.0 if ci.half_width is None else 100 * ci.half_width
            ax.errorbar(
                100 * ci.mean,
                row + offset,
                xerr=err,
                fmt=marker,
                color=colors[arm],
                capsize=3,
                alpha=1.0 if metric == "final" else 0.55,
            )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(arms)), list(reversed(arms)))
    ax.set_xlabel(f"held-out accuracy minus {tables.baseline} (percentage points, paired seeds, 95% t-interval)")
    ax.set_title(title, fontsize=10)
    # heavy (matplotlib): imported only to draw
    from matplotlib.lines import Line2D

    ax.legend(
        handles=[
            Line2D([], [], marker="o", linestyle="", color="gray", label="final"),
            Line2D([], [], marker="s", linestyle="", color="gray", alpha=0.55, label="best"),
        ],
        fontsize=8,
        loc="best",
    )
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- files


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in row])
    return buffer.getvalue()


def _ci_fields(ci: MeanCI | None) -> list[Any]:
    if ci is None:
        return [None, None, None, None, None]
    return [ci.n, ci.mean, ci.std, ci.low, ci.high]


def write_csvs(
    tables: StudyTables, records: Sequence[RunRecord], docs_dir: Path, *, power: float = 0.8, reference: float = 2.0
) -> list[Path]:
    """runs.csv, arms.csv, paired.csv (with each difference's MDE at ``power`` and the seeds ``reference``
    points need, in the metric's display unit) and curves.csv in ``docs_dir``."""
    paths = []
    rows = []
    for record in sorted(records, key=lambda r: (tables.arms.index(r.arm) if r.arm in tables.arms else 99, r.seed)):
        values = tables.per_run[record.arm][record.seed]
        rows.append(
            [
                record.arm,
                tables.groups.get(record.arm),
                record.seed,
                *[values[m] for m in RUN_METRICS],
                record.wall_seconds,
                str(record.run_dir),
            ]
        )
    path = docs_dir / "runs.csv"
    atomic_write_text(path, _csv_text(["arm", "group", "seed", *RUN_METRICS, "wall_seconds", "run_dir"], rows))
    paths.append(path)

    header = ["arm", "group"]
    for m in RUN_METRICS:
        header += [f"{m}_n", f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high"]
    rows = [
        [arm, tables.groups[arm], *[x for m in RUN_METRICS for x in _ci_fields(tables.summary[arm][m])]]
        for arm in tables.arms
    ]
    path = docs_dir / "arms.csv"
    atomic_write_text(path, _csv_text(header, rows))
    paths.append(path)

    rows = []
    for arm in tables.arms:
        for m in PAIRED_METRICS if arm != tables.baseline else ():
            ci = tables.paired[arm][m]
            scale, unit, _ = METRIC_UNITS[m]
            figures = power_figures(ci, scale, power=power, reference=reference if unit == "pts" else None)
            rows.append(
                [
                    arm,
                    tables.baseline,
                    m,
                    *_ci_fields(ci),
                    verdict(ci),
                    unit,
                    None if figures is None else figures.mde,
                    None if figures is None else figures.seeds_for_reference,
                ]
            )
    path = docs_dir / "paired.csv"
    atomic_write_text(
        path,
        _csv_text(
            [
                "arm",
                "baseline",
                "metric",
                "pairs",
                "mean_diff",
                "std_diff",
                "ci_low",
                "ci_high",
                "difference_above_zero",
                "mde_unit",
                f"mde_at_{power:g}_power",
                f"seeds_for_{reference:g}",
            ],
            rows,
        ),
    )
    paths.append(path)

    rows = []
    for key in dict([*CURVE_PANELS, *MECHANISM_PANELS]):
        for arm, c in curve_stats(records, key).items():
            rows += [[arm, key, *point] for point in zip(c.steps, c.mean, c.low, c.high, c.seeds)]
    path = docs_dir / "curves.csv"
    atomic_write_text(path, _csv_text(["arm", "metric", "step", "mean", "ci_low", "ci_high", "seeds"], rows))
    paths.append(path)
    return paths


# --------------------------------------------------------------------------- results.md


def _scale_text(study: StudyConfig, plan: Sequence[PlannedRun]) -> str:
    """One paragraph: arms, seeds, steps and the shape of one run."""
    if not plan:
        return "no runs"
    cfg = plan[0].config
    ro, al, ev = cfg.rollout, cfg.algorithm, cfg.eval
    by_arm: dict[str, list[int]] = {}
    for run in plan:
        by_arm.setdefault(run.arm, []).append(run.seed)
    main = [a for a in by_arm if study.arms[a].group == "main"]
    abl = [a for a in by_arm if study.arms[a].group == "ablation"]
    seeds_main = sorted({s for a in main for s in by_arm[a]})
    seeds_abl = sorted({s for a in abl for s in by_arm[a]})
    parts = [f"{len(plan)} runs: main arms {', '.join(main) or '-'} x seeds {seeds_main}"]
    if abl:
        parts.append(f"ablations {', '.join(abl)} x seeds {seeds_abl}")
    held = ev.max_examples if ev.max_examples is not None else "all"
    parts.append(
        f"{cfg.steps} steps per run, each {ro.prompts_per_step} prompts x {ro.group_size} samples "
        f"(<= {ro.max_new_tokens} new tokens, temperature {ro.temperature:g}), {al.epochs} epoch(s) x "
        f"{al.mini_batches} mini-batch(es) = {al.epochs * al.mini_batches} updates per step, lr {cfg.optim.lr:g}, "
        f"beta {al.beta:g}; held-out accuracy: {held} problems, greedy, every {ev.every or cfg.steps} steps"
    )
    return "; ".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _other_configs(study: StudyConfig) -> list[str]:
    lines = []
    own = Path(study.source).resolve() if study.source else None
    for path in sorted(CONFIG_DIR.glob("study_*.yaml")):
        if own is not None and path.resolve() == own:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        title = data.get("title") or data.get("name") or path.stem
        lines.append(f"- {title}: `apmpo study {path.name}` (quick variant: `apmpo study {path.name} --quick`)")
    return lines


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _seeds_text(figures: PowerFigures | None) -> str:
    if figures is None:
        return "n/a"
    return "> 100000" if figures.seeds_for_reference is None else str(figures.seeds_for_reference)


def _controller_line(records: Sequence[Any], arm: str) -> str | None:
    """How an adaptive arm's p and eps_ada moved (mean over seeds), or None without them."""
    runs = [r for r in records if r.arm == arm]
    p_curve, e_curve = curve_stats(runs, "p").get(arm), curve_stats(runs, "eps_high").get(arm)
    if not p_curve or not e_curve:
        return None
    return (
        f"{arm}'s controllers: p (mean over seeds) went from {p_curve.mean[0]:.3f} at step {p_curve.steps[0]} to "
        f"{p_curve.mean[-1]:.3f} at the last step (range {min(p_curve.mean):.3f}-{max(p_curve.mean):.3f}); eps_ada from "
        f"{e_curve.mean[0]:.3f} to {e_curve.mean[-1]:.3f} (range {min(e_curve.mean):.3f}-{max(e_curve.mean):.3f})."
    )


def render_markdown(
    study: StudyConfig,
    result: StudyResult,
    tables: StudyTables,
    claims: list[Claim],
    *,
    command: str,
    full_study: StudyConfig,
    planned: Sequence[PlannedRun],
    full_plan: Sequence[PlannedRun],
    machine: dict[str, Any],
    figures: dict[str, Path],
    csvs: list[Path],
    md_dir: Path,
    invocations: Sequence[dict],
    report_only: bool,
    seed_plan: Any = None,
) -> str:
    """The text of results.md."""
    L: list[str] = [f"# {study.title}", ""]
    L.append(
        f"_Generated by `apmpo study` on {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} (commands below); "
        "every number, table and figure below comes from the run directories. "
        "Do not edit by hand: rerun the command to regenerate._"
    )
    L.append("")
    if study.description:
        L += [study.description, ""]

    L += ["## How this was produced", ""]
    if invocations:
        L.append(
            "Training invocations (appended to `invocations.jsonl` in the output directory by each run of the command):"
        )
        L.append("")
        for inv in invocations:
            m = inv.get("machine") or {}
            load = m.get("load_average")
            L.append(
                f"- `{inv['command']}`: started {inv['started'].replace('T', ' ')}, {inv['wall_seconds'] / 60:.1f} min wall, "
                f"{inv['trained']} runs trained ({inv['reused']} found finished"
                f"{', warm-up trained' if inv.get('warmup_trained') else ''}), {inv['jobs']} run(s) at a time with "
                f"{inv['threads_per_run'] or 'default'} torch thread(s) each; {m.get('cpu')}, {m.get('cores')} cores"
                + (f", load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the start" if load else "")
                + (f"; code: git {inv['code']}" if inv.get("code") else "")
            )
        L.append("")
    if report_only or not invocations:
        L.append(f"- This report was written by `{command}` (no training in that invocation).")
    L.append(
        f"- Software: {machine['platform']}; Python {machine['python']}, torch {machine['torch']}, "
        f"transformers {machine['transformers']}"
    )
    run_seconds = sum(r.wall_seconds for r in result.runs)
    L.append(
        f"- Sum of the runs' wall times: {run_seconds / 60:.1f} min over {len(result.runs)} runs "
        f"(mean {run_seconds / max(len(result.runs), 1):.0f} s per run)"
    )
    if result.warmup is not None and study.warmup is not None:
        w = result.warmup
        L.append(
            f"- Warm-up (supervised, from scratch): {study.warmup.model} ({w.parameters:,} parameters), "
            f"{w.steps} steps of batch {study.warmup.batch_size} in {w.wall_seconds:.0f} s; validation accuracy "
            f"{100 * w.validation_accuracy:.1f}%, held-out accuracy {100 * (w.heldout_accuracy or 0):.1f}% "
            f"(target {100 * study.warmup.target_accuracy:.0f}%); saved once, every run starts from it"
        )
    L.append("")

    L += ["## Scale", ""]
    L.append(f"- Ran: {_scale_text(study, planned)}.")
    ran_names = {(r.arm, r.seed, r.config.steps) for r in planned}
    full_names = {(r.arm, r.seed, r.config.steps) for r in full_plan}
    if ran_names == full_names:
        L.append(
            f"- This is the full configuration of `{Path(full_study.source).name if full_study.source else full_study.name}`."
        )
    else:
        L.append(
            f"- The full configuration (`apmpo study {Path(full_study.source).name if full_study.source else full_study.name}`) "
            f"would run {_scale_text(full_study, full_plan)}."
        )
    if result.missing:
        L.append(f"- Not finished (left out of every table): {', '.join(result.missing)}.")
    L.append("")

    L += [
        "## Held-out accuracy",
        "",
        (
            "Mean over seeds with the 95% Student-t interval in brackets (percent; greedy Pass@1 on the held-out split). "
            "*before*: the starting model; *final*: after the last step; *best*: the highest evaluation after step 0 "
            "(selected on the held-out set, optimistic); *gain*: final - before (points); *late entropy*: mean token "
            f"entropy of the sampled completions over the last {study.report.late_fraction:.0%} of the steps (nats); "
            "*sampled tokens*: completion tokens generated over the run (the rollout budget)."
        ),
        "",
    ]
    rows = []
    for arm in tables.arms:
        s = tables.summary[arm]
        rows.append(
            [
                f"**{arm}**" if arm == "apmpo" else arm,
                tables.groups[arm],
                s["final"].n if s["final"] else 0,
                _level(s["initial"]),
                _level(s["final"]),
                _level(s["best"]),
                _signed(s["gain"]),
                _level(s["late_entropy"], 1.0, 3),
                "n/a" if s["generated_tokens"] is None else f"{s['generated_tokens'].mean / 1e3:.0f}k",
            ]
        )
    L += _table(["arm", "group", "seeds", "before", "final", "best", "gain", "late entropy", "sampled tokens"], rows)
    L.append("")

    pw = study.power
    ref = pw.reference_difference
    L += [
        f"## Paired differences vs {tables.baseline.upper()}",
        "",
        (
            f"arm minus {tables.baseline} at the same seed, mean over the seeds both ran, 95% t-interval in brackets "
            f"(accuracy in percentage points, entropy in nats). *MDE*: the smallest true difference the paired "
            f"two-sided t-test (alpha 0.05) detects with {pw.power:.0%} power given the observed paired SD and the "
            f"number of pairs (noncentral t); *seeds for {ref:g} pts*: the pairs a {ref:g}-point difference would need "
            f"for {pw.power:.0%} power at the observed SD."
        ),
        "",
    ]
    rows = []
    for arm in tables.arms:
        if arm == tables.baseline:
            continue
        p = tables.paired[arm]
        n = final.n if (final := p.get("final")) else 0
        figs = [power_figures(p.get(m), 100.0, power=pw.power, reference=ref) for m in ("final", "best")]
        rows.append(
            [
                arm,
                n,
                _signed(p.get("final")),
                _signed(p.get("best")),
                _signed(p.get("late_entropy"), 1.0, 3),
                " / ".join("n/a" if f is None else f"{f.mde:.1f}" for f in figs),
                " / ".join(_seeds_text(f) for f in figs),
            ]
        )
    L += _table(
        [
            "arm",
            "pairs",
            "Δ final",
            "Δ best",
            "Δ late entropy",
            "MDE final / best (pts)",
            f"seeds for {ref:g} pts (final / best)",
        ],
        rows,
    )
    L.append("")
    if seed_plan is not None:
        L += ["## Seeds planned from the pilot", "", *seed_plan.markdown(), ""]

    L += [
        "## What holds here",
        "",
        (
            "Each claim, checked with the paired 95% interval of the difference it is about: **supports** = interval "
            "entirely on the claimed side of 0 (detail: *holds*); **contradicts** = entirely on the other side "
            "(*reversed*); **cannot tell** = the interval includes 0 (*same direction, not significant*: the mean is "
            "on the claimed side; *not observed*: on the other side), or there is nothing to test (*no difference*: "
            "identical at every paired seed; *not testable*: fewer than two paired seeds, or every paired difference "
            "equal). Power: the MDE at "
            f"{pw.power:.0%} power, the power to detect the paper's difference where it reports one "
            f"({CLAIMS_SOURCE}) and a {ref:g}-point difference, and the seeds that difference would need."
        ),
        "",
    ]
    for line in _headline(tables, claims):
        L.append(f"- {line}")
    for arm in ("apmpo", "apmpo_group"):
        controllers = _controller_line(result.runs, arm)
        if controllers:
            L.append(f"- {controllers}")
    L.append("")
    checked = [c for c in claims if c.verdict != "not checked"]
    L += _table(
        ["claim", "here", "evidence (paired difference, 95% interval, pairs; means over the paired seeds)", "power"],
        [
            [
                c.claim,
                f"**{c.plain}** ({c.verdict})"
                if c.plain in ("supports", "contradicts")
                else f"{c.plain} ({c.verdict})",
                c.evidence,
                power_text(c.power, *METRIC_UNITS[c.metric][1:]),
            ]
            for c in checked
        ],
    )
    L.append("")
    unchecked = [c for c in claims if c.verdict == "not checked"]
    if unchecked:
        L += [
            f"Not checked (an arm is not in this study): {'; '.join(f'{c.claim} ({c.evidence})' for c in unchecked)}.",
            "",
        ]
    L += ["### In plain words", ""]
    L += [f"- {claim_sentence(c)}" for c in checked]
    L.append("")
    L.append(
        "A verdict applies to this setting and scale only. \"Cannot tell\" with a large MDE means the study "
        "is too small to decide, not that the methods are equal."
    )
    L.append("")

    L += ["## Curves", ""]
    for label, path in figures.items():
        L += [f"![{label}]({_rel(path, md_dir)})", ""]

    L += ["## Files", ""]
    descriptions = {
        "runs.csv": "one row per run: before / final / best / gain and late-training means",
        "arms.csv": "per arm: n, mean, std and 95% interval of each run metric",
        "paired.csv": f"paired differences vs {tables.baseline} (final, best, late entropy), their MDE "
        "and the seeds the reference difference needs",
        "curves.csv": "per arm, metric and step: mean and 95% t-interval over seeds (the figures' data, unsmoothed)",
        "study.json": "all of the above and the claims, machine-readable",
    }
    for path in [*csvs, Path(csvs[0]).parent / "study.json"] if csvs else []:
        L.append(f"- [`{path.name}`]({_rel(path, md_dir)}): {descriptions.get(path.name, '')}")
    L.append(
        f"- run directories (metrics.jsonl, samples, held-out records): `{Path(study.output_dir) / 'runs'}` "
        f"(not committed; regenerate with the command above)"
    )
    L.append("")
    others = _other_configs(study)
    if others:
        L += ["## Other study configurations", "", *others, ""]
    return "\n".join(L)


def _ci_json(ci: MeanCI | None) -> dict[str, Any] | None:
    return None if ci is None else {"n": ci.n, "mean": ci.mean, "std": ci.std, "low": ci.low, "high": ci.high}


def write_report(
    study: StudyConfig,
    result: StudyResult,
    *,
    command: str,
    full_study: StudyConfig,
    planned: Sequence[PlannedRun],
    full_plan: Sequence[PlannedRun],
    invocations: Sequence[dict] = (),
    report_only: bool = False,
) -> list[Path]:
    """Write the CSVs, figures, study.json and results.md; returns the paths written.

    ``planned`` are the runs of this invocation's study, ``full_plan`` those of the study
    as configured (before --quick and command-line restrictions), for the scale section.
    """
    docs_dir = Path(study.report.docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    tables = compute_tables(study, result.runs)
    claims = check_claims(tables, power=study.power.power, reference=study.power.reference_difference)
    colors = _colors(tables.arms)
    csvs = write_csvs(
        tables, result.runs, docs_dir, power=study.power.power, reference=study.power.reference_difference
    )
    files = list(csvs)

    figures: dict[str, Path] = {}
    main = [a for a in tables.arms if tables.groups[a] == "main"]
    ablation = [a for a in tables.arms if tables.groups[a] == "ablation"]
    reference = [a for a in ("grpo", "apmpo") if a in tables.arms and a not in ablation]
    for group, arms, label in (("main", main, "main arms"), ("ablations", [*reference, *ablation], "APMPO ablations")):
        if not arms or (group == "ablations" and not ablation):
            continue
        figures[label] = plot_curves(
            result.runs,
            arms,
            docs_dir / f"curves_{group}.png",
            title=f"{study.title}: {label}",
            smooth=study.report.smooth,
            colors=colors,
        )
        figures[f"mechanism, {label}"] = plot_curves(
            result.runs,
            arms,
            docs_dir / f"mechanism_{group}.png",
            title=f"{study.title}: {label}, mechanism metrics",
            smooth=study.report.smooth,
            colors=colors,
            panels=MECHANISM_PANELS,
        )
    if len(tables.arms) > 1:
        figures["paired differences"] = plot_paired(
            tables,
            docs_dir / "paired_differences.png",
            title=f"{study.title}\npaired differences vs {tables.baseline}",
            colors=colors,
        )
    files += list(figures.values())

    machine = machine_info()
    record = {
        "study": study.name,
        "title": study.title,
        "command": command,
        "machine": machine,
        "invocations": list(invocations),
        "wall_seconds": result.wall_seconds,
        "baseline": tables.baseline,
        "runs": {arm: {str(seed): values for seed, values in seeds.items()} for arm, seeds in tables.per_run.items()},
        "arms": {arm: {m: _ci_json(ci) for m, ci in tables.summary[arm].items()} for arm in tables.arms},
        "paired": {arm: {m: _ci_json(ci) for m, ci in p.items()} for arm, p in tables.paired.items() if p},
        "claims": [
            {
                "claim": c.claim,
                "a": c.a,
                "b": c.b,
                "metric": c.metric,
                "verdict": c.verdict,
                "plain": c.plain,
                "evidence": c.evidence,
                "difference": _ci_json(c.ci),
                "power": None if c.power is None else dataclasses.asdict(c.power),
                "extension": bool(c.spec and c.spec.extension),
                "sentence": claim_sentence(c),
            }
            for c in claims
        ],
        "seed_plan": None if result.seed_plan is None else result.seed_plan.to_json(),
        "missing": result.missing,
        "warmup": None
        if result.warmup is None
        else {
            "steps": result.warmup.steps,
            "validation_accuracy": result.warmup.validation_accuracy,
            "heldout_accuracy": result.warmup.heldout_accuracy,
            "wall_seconds": result.warmup.wall_seconds,
            "parameters": result.warmup.parameters,
        },
    }
    path = docs_dir / "study.json"
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    files.append(path)

    if study.report.results_md:
        md_path = Path(study.report.results_md)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        text = render_markdown(
            study,
            result,
            tables,
            claims,
            command=command,
            full_study=full_study,
            planned=planned,
            full_plan=full_plan,
            machine=machine,
            figures=figures,
            csvs=csvs,
            md_dir=md_path.parent,
            invocations=invocations,
            report_only=report_only,
            seed_plan=result.seed_plan,
        )
        atomic_write_text(md_path, text)
        files.append(md_path)
    return files

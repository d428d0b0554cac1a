"""Seeds per arm from a pilot: how many paired seeds a study needs for a target minimum detectable difference.

``apmpo study CONFIG --target-mde 2 --seed-budget 40`` (or ``power: {target_mde, seed_budget}``
in the study config) runs the configured seeds first -- the **pilot** -- then plans the
seeds of every arm from the pilot's paired spread, prints the plan, trains the added
seeds and reports on all of them. The rule, in full:

1. Comparisons of interest: every arm against the baseline, and every claim of the
   report (:data:`apmpo.study.report.CLAIMS`, our extension's included) on final
   and best held-out accuracy, whose two arms are both in the study.
2. For each, the standard deviation sd of the paired differences over the pilot seeds
   both arms ran (at least two pairs with some spread; otherwise it is left out).
3. Each arm's planning sd is the **largest** sd over the comparisons of interest that
   involve it (a conservative choice: an arm is sized for its noisiest comparison);
   an arm in none of them takes the largest sd of all.
4. Its seed count is the smallest n whose minimum detectable difference (two-sided
   paired t-test, alpha = 0.05, the study's target power, noncentral t:
   :func:`apmpo.study.stats.seeds_needed`) is at most the target, never fewer than
   its pilot seeds, at most the seed budget.
5. Its seeds are its pilot seeds followed by the next seeds of the study's order (the
   main seeds, then the ablation seeds, then max + 1, max + 2, ...), so every pair of
   arms shares the first min(n_a, n_b) seeds and stays paired.

The plan depends only on the pilot runs, so rerunning the command (in another session,
after an interruption) plans the same seeds and resumes. A pilot of two or three seeds
estimates sd roughly (one or two degrees of freedom): the plan is a guide, and the report
recomputes every MDE from the seeds that actually ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apmpo.study.config import StudyConfig
from apmpo.study.report import CLAIMS, StudyTables, power_figures
from apmpo.study.stats import minimum_detectable_difference, seeds_needed_or_none

__all__ = ["ComparisonPlan", "SeedPlan", "SeedPlanError", "apply_seed_plan", "comparisons_of_interest", "plan_seeds"]

PLAN_METRICS = ("final", "best")
"""The metrics the plan sizes for (held-out accuracy, in points)."""
_SCALE = 100.0  # accuracy fractions -> percentage points


class SeedPlanError(ValueError):
    """The pilot cannot size the study (the message says what is missing)."""


@dataclass(frozen=True)
class ComparisonPlan:
    """One comparison of interest as measured on the pilot."""

    a: str
    """First arm."""
    b: str
    """Second arm (the difference is a - b)."""
    metric: str
    """final or best."""
    pairs: int
    """Pilot seeds both arms ran."""
    sd: float | None
    """Standard deviation of the paired differences, in points (None: fewer than two pairs or no spread)."""
    mde: float | None
    """MDE with the pilot's pairs, in points."""
    seeds_for_target: int | None
    """Pairs the target MDE needs at this sd (None: sd undefined, or more than 100000)."""


@dataclass
class SeedPlan:
    """Seeds per arm for a target MDE, from the pilot's paired spread (module docstring: the rule)."""

    target_mde: float
    """Target minimum detectable difference, points of held-out accuracy."""
    seed_budget: int | None
    """At most this many seeds per arm (None: no cap)."""
    power: float
    """Target power."""
    comparisons: list[ComparisonPlan]
    """The comparisons of interest, measured on the pilot."""
    pilot_seeds: dict[str, list[int]]
    """Arm -> its pilot seeds."""
    planning_sd: dict[str, float]
    """Arm -> the sd it is sized for (points)."""
    needed: dict[str, int]
    """Arm -> seeds the target needs at its planning sd (uncapped; at least its pilot seeds)."""
    seeds: dict[str, list[int]] = field(default_factory=dict)
    """Arm -> the seeds it will run (capped by the budget)."""

    def achieved_mde(self, arm: str) -> float | None:
        """MDE at the planned seed count and the arm's planning sd (points; None with fewer than two seeds)."""
        n = len(self.seeds[arm])
        return None if n < 2 else minimum_detectable_difference(self.planning_sd[arm], n, self.power)

    def _mde_text(self, arm: str) -> str:
        mde = self.achieved_mde(arm)
        return "n/a" if mde is None else f"{mde:.1f}"

    def lines(self) -> list[str]:
        """The plan as plain text lines (printed by ``apmpo study``)."""
        out = [
            f"seed plan: target MDE {self.target_mde:g} pts at {self.power:.0%} power (paired t, alpha 0.05), "
            f"budget {self.seed_budget if self.seed_budget is not None else 'none'} seeds per arm; "
            "each arm sized for its noisiest comparison of interest on the pilot"
        ]
        for c in self.comparisons:
            sd = "n/a" if c.sd is None else f"{c.sd:.2f}"
            mde = "n/a" if c.mde is None else f"{c.mde:.1f}"
            need = "n/a" if c.seeds_for_target is None else str(c.seeds_for_target)
            out.append(
                f"  {c.a} - {c.b} ({c.metric}): pilot pairs {c.pairs}, paired SD {sd} pts, MDE now {mde} pts, "
                f"seeds for {self.target_mde:g} pts: {need}"
            )
        for arm, seeds in self.seeds.items():
            capped = " (capped by the budget)" if len(seeds) < self.needed[arm] else ""
            out.append(
                f"  {arm}: planning SD {self.planning_sd[arm]:.2f} pts -> needs {self.needed[arm]}, runs "
                f"{len(seeds)} seeds{capped}: MDE {self._mde_text(arm)} pts"
            )
        return out

    def markdown(self) -> list[str]:
        """The plan for results.md: the rule and a table per arm."""
        rows = [
            f"| {arm} | {', '.join(map(str, self.pilot_seeds[arm]))} | {self.planning_sd[arm]:.2f} | "
            f"{self.needed[arm]} | {len(self.seeds[arm])} | {self._mde_text(arm)} |"
            for arm in self.seeds
        ]
        budget = f"at most {self.seed_budget} seeds per arm" if self.seed_budget is not None else "no seed cap"
        return [
            (
                f"Target: an MDE of {self.target_mde:g} points of held-out accuracy (final and best) at "
                f"{self.power:.0%} power, {budget}. Rule: each arm's paired SD is the largest over the pilot's comparisons "
                "of interest that involve it (vs the baseline and the claims' comparisons, final and best accuracy); its "
                "seeds are the fewest whose MDE at that SD meets the target (noncentral t), at least its pilot seeds, at "
                "most the budget (`apmpo.study.plan`). The pilot's SDs rest on few seeds; the tables above "
                "recompute every MDE from the seeds that ran."
            ),
            "",
            "| arm | pilot seeds | planning SD (pts) | seeds needed | seeds run | MDE at those seeds (pts) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (study.json)."""
        return {
            "target_mde": self.target_mde,
            "seed_budget": self.seed_budget,
            "power": self.power,
            "comparisons": [c.__dict__ for c in self.comparisons],
            "pilot_seeds": self.pilot_seeds,
            "planning_sd": self.planning_sd,
            "needed": self.needed,
            "seeds": self.seeds,
        }


def comparisons_of_interest(arms: Sequence[str], baseline: str) -> list[tuple[str, str, str]]:
    """(a, b, metric) pairs: every arm vs the baseline and every claim on final/best accuracy, both arms present."""
    present = set(arms)
    out = [(arm, baseline, m) for arm in arms if arm != baseline for m in PLAN_METRICS]
    out += [(c.a, c.b, c.metric) for c in CLAIMS if c.metric in PLAN_METRICS and {c.a, c.b} <= present]
    return list(dict.fromkeys(out))


def plan_seeds(
    study: StudyConfig, pilot: StudyTables, *, target_mde: float, seed_budget: int | None, power: float = 0.8
) -> SeedPlan:
    """The seed plan of ``study`` from its pilot's tables (``compute_tables`` over the pilot runs)."""
    if not target_mde > 0:
        raise SeedPlanError(f"--target-mde: must be > 0 points, got {target_mde}")
    if seed_budget is not None and seed_budget < 2:
        raise SeedPlanError(f"--seed-budget: must be >= 2 seeds per arm, got {seed_budget}")
    missing = [a for a in study.arms if a not in pilot.per_run]
    if missing:
        raise SeedPlanError(f"the pilot has no finished run of {', '.join(missing)}: train the configured seeds first")
    comparisons = []
    for a, b, metric in comparisons_of_interest(list(study.arms), study.baseline):
        ci = pilot.diff(a, b, metric)
        figures = power_figures(ci, _SCALE, power=power, reference=target_mde)
        if figures is None:
            comparisons.append(ComparisonPlan(a, b, metric, 0 if ci is None else ci.n, None, None, None))
        else:
            comparisons.append(
                ComparisonPlan(a, b, metric, figures.n, figures.sd, figures.mde, figures.seeds_for_reference)
            )
    usable = {(c.a, c.b, c.metric): c.sd for c in comparisons if c.sd is not None}
    if not usable:
        raise SeedPlanError(
            "the pilot gives no paired spread to plan from: every comparison of interest needs at "
            "least two paired seeds whose differences are not all equal (run more pilot seeds)"
        )
    largest = max(usable.values())
    pilot_seeds = {arm: sorted(pilot.per_run[arm]) for arm in study.arms}
    order = list(
        dict.fromkeys(
            [*study.seeds, *(study.ablation_seeds or []), *(s for seeds in pilot_seeds.values() for s in seeds)]
        )
    )
    plan = SeedPlan(target_mde, seed_budget, power, comparisons, pilot_seeds, {}, {})
    for arm in study.arms:
        sds = [sd for (a, b, _), sd in usable.items() if arm in (a, b)]
        plan.planning_sd[arm] = max(sds) if sds else largest
        need = seeds_needed_or_none(target_mde, plan.planning_sd[arm], power)
        plan.needed[arm] = max(len(pilot_seeds[arm]), 100_000 if need is None else need)
        count = (
            plan.needed[arm] if seed_budget is None else min(plan.needed[arm], max(seed_budget, len(pilot_seeds[arm])))
        )
        extra = (s for s in itertools.chain(order, itertools.count(max(order) + 1)) if s not in pilot_seeds[arm])
        plan.seeds[arm] = pilot_seeds[arm] + list(itertools.islice(extra, count - len(pilot_seeds[arm])))
    return plan


def apply_seed_plan(study: StudyConfig, plan: SeedPlan) -> StudyConfig:
    """A copy of ``study`` whose arms run the planned seeds."""
    planned = study.model_copy(deep=True)
    for name, arm in planned.arms.items():
        if name in plan.seeds:
            arm.seeds = list(plan.seeds[name])
    return planned

"""Power in the report: generated claim verdicts with their power, and seeds planned from a pilot."""

from __future__ import annotations

import math

import pytest

from apmpo.study import runner
from apmpo.study.config import StudyConfig, StudyError, load_study_config, restrict
from apmpo.study.plan import SeedPlanError, apply_seed_plan, comparisons_of_interest, plan_seeds
from apmpo.study.report import (
    CLAIMS,
    StudyTables,
    check_claim,
    check_claims,
    claim_sentence,
    power_figures,
)
from apmpo.study.stats import mean_ci, minimum_detectable_difference, paired_t_power, seeds_needed

from .conftest import write_study


def _tables(values: dict[str, dict[int, tuple[float, float]]], baseline: str = "grpo") -> StudyTables:
    """Tables from arm -> seed -> (final, best) accuracies (fractions); late entropy = final / 10."""
    per_run = {arm: {seed: {"final": f, "best": b, "late_entropy": f / 10} for seed, (f, b) in seeds.items()}
               for arm, seeds in values.items()}
    return StudyTables(list(values), {a: "main" for a in values}, per_run, {}, baseline, {})


GRPO = {0: (0.60, 0.62), 1: (0.64, 0.66), 2: (0.58, 0.61), 3: (0.66, 0.67)}


def _shift(base, deltas):
    return {s: (f + d, b + d) for (s, (f, b)), d in zip(base.items(), deltas)}


APMPO_CLAIM = next(c for c in CLAIMS if (c.a, c.b, c.metric) == ("apmpo", "grpo", "final"))


def test_supports_with_power_figures():
    # differences +6, +8, +7, +9 points: mean 7.5, sd = sqrt(5/3) = 1.291 points
    tables = _tables({"grpo": GRPO, "apmpo": _shift(GRPO, [0.06, 0.08, 0.07, 0.09])})
    claim = check_claim(tables, APMPO_CLAIM)
    assert claim.verdict == "holds" and claim.plain == "supports"
    sd = math.sqrt(5 / 3)
    assert claim.power.n == 4 and claim.power.sd == pytest.approx(sd)
    assert claim.power.mde == pytest.approx(minimum_detectable_difference(sd, 4))
    assert claim.power.power_at_paper == pytest.approx(paired_t_power(4.6, sd, 4))
    assert claim.power.power_at_reference == pytest.approx(paired_t_power(2.0, sd, 4))
    assert claim.power.seeds_for_reference == seeds_needed(2.0, sd)
    text = claim_sentence(claim)
    assert text.startswith("APMPO beats GRPO (final held-out accuracy) [paper: +4.6 pts]: **supports** it:")
    assert "apmpo - grpo = +7.5 pts, 95% interval [+5.4, +9.6] over 4 paired seeds, entirely above 0" in text
    assert f"detects {minimum_detectable_difference(sd, 4):.1f} pts with 80% power (paired SD 1.3, n = 4)" in text
    assert f"power {paired_t_power(4.6, sd, 4):.0%} for the paper's +4.6" in text
    assert f"which would need {seeds_needed(2.0, sd)} seeds for 80%" in text


def test_contradicts_and_cannot_tell():
    tables = _tables({"grpo": GRPO, "apmpo": _shift(GRPO, [-0.06, -0.08, -0.07, -0.09])})
    claim = check_claim(tables, APMPO_CLAIM)
    assert claim.plain == "contradicts" and "**contradicts** it:" in claim_sentence(claim)
    assert "entirely below 0" in claim_sentence(claim) and "ruled out" not in claim_sentence(claim)

    # differences +1, -1, +2, 0: includes 0, mean on the claimed side; the interval [-1.6, +2.6] excludes +4.6
    tables = _tables({"grpo": GRPO, "apmpo": _shift(GRPO, [0.01, -0.01, 0.02, 0.0])})
    claim = check_claim(tables, APMPO_CLAIM)
    assert claim.verdict == "same direction, not significant" and claim.plain == "cannot tell"
    text = claim_sentence(claim)
    assert "**cannot tell**: apmpo - grpo = +0.5 pts" in text and "(the mean is on the claimed side)" in text
    assert "the interval excludes the paper's +4.6 pts, so an effect that large is ruled out here" in text

    # a wide interval that still reaches +4.6: not ruled out
    tables = _tables({"grpo": GRPO, "apmpo": _shift(GRPO, [0.10, -0.09, 0.06, -0.05])})
    assert "ruled out" not in claim_sentence(check_claim(tables, APMPO_CLAIM))


def test_untestable_and_unchecked_claims_say_so():
    same = _tables({"grpo": GRPO, "apmpo": dict(GRPO)})
    claim = check_claim(same, APMPO_CLAIM)
    assert claim.verdict == "no difference" and claim.power is None
    text = claim_sentence(claim)
    assert "**cannot tell**: the two arms gave identical results at every paired seed" in text
    assert "power undefined (fewer than two paired seeds, or no spread between them)" in text
    one = _tables({"grpo": {0: (0.6, 0.6)}, "apmpo": {0: (0.7, 0.7)}})
    assert "**cannot tell** (not testable: one paired seed)" in claim_sentence(check_claim(one, APMPO_CLAIM))
    claims = check_claims(same)
    dapo = next(c for c in claims if c.b == "dapo")
    assert dapo.plain == "not checked" and claim_sentence(dapo).endswith("**not checked** here (arm dapo not in this study).")


def test_entropy_claims_have_no_point_reference():
    tables = _tables({"grpo": GRPO, "apmpo": _shift(GRPO, [0.01, 0.03, 0.02, 0.01])})
    claim = next(c for c in check_claims(tables) if c.metric == "late_entropy" and c.a == "apmpo")
    assert claim.power.reference is None and claim.power.paper_difference is None
    assert "nats with 80% power" in claim_sentence(claim) and "pts" not in claim_sentence(claim)


def test_extension_claims_are_marked_and_checked():
    spec = next(c for c in CLAIMS if c.a == "apmpo_group" and c.b == "apmpo")
    assert spec.extension and "not the paper's claim" in spec.text and spec.paper_difference is None
    tables = _tables({"grpo": GRPO, "apmpo": _shift(GRPO, [0.01] * 4),
                      "apmpo_group": _shift(GRPO, [0.02, 0.04, 0.03, 0.05])})
    assert check_claim(tables, spec).plain == "supports"


def test_power_figures_undefined_cases():
    assert power_figures(None, 100.0) is None
    assert power_figures(mean_ci([0.1]), 100.0) is None
    assert power_figures(mean_ci([0.1, 0.1, 0.1]), 100.0) is None
    figures = power_figures(mean_ci([0.01, 0.03]), 100.0, reference=2.0, power=0.9)
    assert figures.power == 0.9 and figures.mde == pytest.approx(minimum_detectable_difference(math.sqrt(2), 2, 0.9))


# ---------------------------------------------------------------- seed planning

def _study(arms, seeds=(0, 1), ablation_seeds=None, baseline="grpo"):
    return StudyConfig(name="plan", arms={a: {} for a in arms}, baseline=baseline, seeds=list(seeds),
                       ablation_seeds=None if ablation_seeds is None else list(ablation_seeds))


def test_comparisons_of_interest():
    got = comparisons_of_interest(["grpo", "apmpo", "fac_only", "pmpo_only"], "grpo")
    assert ("apmpo", "grpo", "final") in got and ("apmpo", "grpo", "best") in got
    assert ("pmpo_only", "fac_only", "final") in got and ("apmpo", "fac_only", "final") in got
    assert all(metric in ("final", "best") for _, _, metric in got) and len(got) == len(set(got))
    assert ("apmpo", "dapo", "final") not in got


def test_plan_rule_by_hand():
    # pilot: 3 seeds; apmpo - grpo differences (points) final +2, -2, 0 (sd 2), best +1, -1, 0 (sd 1);
    # fac_only - grpo final +8, -8, 0 (sd 8), best 0, 0, 0 (no spread: left out); apmpo - fac_only final -6, +6, 0 (sd 6)
    grpo = {0: (0.50, 0.50), 1: (0.60, 0.60), 2: (0.55, 0.55)}
    tables = _tables({"grpo": grpo, "apmpo": _shift(grpo, [0.02, -0.02, 0.0]),
                      "fac_only": {s: (f + d, b) for (s, (f, b)), d in zip(grpo.items(), [0.08, -0.08, 0.0])}})
    tables.per_run["apmpo"] = {s: {"final": tables.per_run["apmpo"][s]["final"],
                                   "best": grpo[s][1] + d, "late_entropy": 0.0}
                               for s, d in zip(grpo, [0.01, -0.01, 0.0])}
    study = _study(["grpo", "apmpo", "fac_only"], seeds=[0, 1, 2])
    plan = plan_seeds(study, tables, target_mde=4.0, seed_budget=None)
    by = {(c.a, c.b, c.metric): c for c in plan.comparisons}
    assert by[("apmpo", "grpo", "final")].sd == pytest.approx(2.0)
    assert by[("apmpo", "grpo", "best")].sd == pytest.approx(1.0)
    assert by[("fac_only", "grpo", "best")].sd is None            # all differences equal: no spread
    assert by[("apmpo", "fac_only", "final")].sd == pytest.approx(6.0)
    assert by[("apmpo", "grpo", "final")].mde == pytest.approx(minimum_detectable_difference(2.0, 3))
    # each arm: its noisiest comparison (grpo: fac_only - grpo, 8; apmpo: apmpo - fac_only, 6; fac_only: 8)
    assert plan.planning_sd == pytest.approx({"grpo": 8.0, "apmpo": 6.0, "fac_only": 8.0})
    assert plan.needed == {"grpo": seeds_needed(4.0, 8.0), "apmpo": seeds_needed(4.0, 6.0),
                           "fac_only": seeds_needed(4.0, 8.0)}
    assert plan.seeds["apmpo"] == list(range(seeds_needed(4.0, 6.0)))
    assert plan.achieved_mde("apmpo") <= 4.0
    # the budget caps every arm; the plan is printed with the rule
    capped = plan_seeds(study, tables, target_mde=4.0, seed_budget=10)
    assert all(len(seeds) == 10 for seeds in capped.seeds.values())
    lines = capped.lines()
    assert "each arm sized for its noisiest comparison" in lines[0]
    assert any("apmpo: planning SD 6.00 pts -> needs" in line and "(capped by the budget)" in line for line in lines)
    assert apply_seed_plan(study, capped).arms["apmpo"].seeds == list(range(10)) and study.arms["apmpo"].seeds is None


def test_plan_keeps_pilot_seeds_and_pairs():
    grpo = {3: (0.5, 0.5), 7: (0.6, 0.6)}
    tables = _tables({"grpo": grpo, "apmpo": _shift(grpo, [0.05, -0.05])})
    plan = plan_seeds(_study(["grpo", "apmpo"], seeds=[3, 7]), tables, target_mde=100.0, seed_budget=None)
    assert plan.seeds == {"grpo": [3, 7], "apmpo": [3, 7]}       # never fewer than the pilot (sd 7.1: 2 suffice)
    plan = plan_seeds(_study(["grpo", "apmpo"], seeds=[3, 7]), tables, target_mde=5.0, seed_budget=5)
    assert plan.seeds["apmpo"] == [3, 7, 8, 9, 10] == plan.seeds["grpo"]


def test_plan_errors():
    grpo = {0: (0.5, 0.5), 1: (0.6, 0.6)}
    study = _study(["grpo", "apmpo"])
    with pytest.raises(SeedPlanError, match="no finished run of apmpo"):
        plan_seeds(study, _tables({"grpo": grpo}), target_mde=2.0, seed_budget=None)
    with pytest.raises(SeedPlanError, match="no paired spread"):
        plan_seeds(study, _tables({"grpo": grpo, "apmpo": dict(grpo)}), target_mde=2.0, seed_budget=None)
    with pytest.raises(SeedPlanError, match="must be > 0"):
        plan_seeds(study, _tables({"grpo": grpo, "apmpo": grpo}), target_mde=0.0, seed_budget=None)


def test_power_settings_are_checked(tmp_path):
    with pytest.raises(StudyError, match=r"power.seed_budget: needs target_mde"):
        load_study_config(write_study(tmp_path, power={"seed_budget": 10}))
    with pytest.raises(StudyError, match=r"toy.yaml: power.target_mde: must be a finite number > 0, got -1"):
        load_study_config(write_study(tmp_path, power={"target_mde": -1}))
    with pytest.raises(StudyError, match=r"unknown key 'power.mde'; known keys here: power, reference_difference"):
        load_study_config(write_study(tmp_path, power={"mde": 2}))
    study = load_study_config(write_study(tmp_path, power={"power": 0.9, "reference_difference": 3}))
    assert (study.power.power, study.power.reference_difference, study.power.target_mde) == (0.9, 3.0, None)
    planned = restrict(study, target_mde=2.0, seed_budget=8)
    assert (planned.power.target_mde, planned.power.seed_budget) == (2.0, 8) and study.power.target_mde is None
    with pytest.raises(StudyError, match="--target-mde / --seed-budget: power.seed_budget: must be an integer >= 2, got 1"):
        restrict(study, target_mde=2.0, seed_budget=1)


def test_study_trains_the_planned_seeds_and_reports_the_plan(tmp_path, monkeypatch):
    calls = []
    original = runner.plan_seeds

    def fixed(study, pilot, **kw):
        calls.append(sorted((a, sorted(s)) for a, s in pilot.per_run.items()))
        two = {s: GRPO[s] for s in (0, 1)}  # the toy runs' accuracies may all be equal: a pilot with spread instead
        plan = original(study, _tables({"grpo": two, "apmpo": _shift(two, [0.02, -0.01]),
                                        "fac_only": {0: (0.6, 0.6)}}), **kw)
        plan.seeds = {"grpo": [0, 1, 2], "apmpo": [0, 1, 2], "fac_only": [0]}
        return plan

    monkeypatch.setattr(runner, "plan_seeds", fixed)
    study = restrict(load_study_config(write_study(tmp_path)), target_mde=3.0, seed_budget=3)
    lines = []
    result = runner.run_study(study, command="apmpo study toy.yaml --target-mde 3", log=lines.append)
    # the pilot (configured seeds) was planned from; the added seed 2 of grpo and apmpo was trained
    assert calls == [[("apmpo", [0, 1]), ("fac_only", [0]), ("grpo", [0, 1])]]
    assert sorted(result.trained) == sorted(["grpo-seed0", "grpo-seed1", "apmpo-seed0", "apmpo-seed1",
                                             "fac_only-seed0", "grpo-seed2", "apmpo-seed2"])
    assert any(line.startswith("seed plan: target MDE 3 pts") for line in lines)
    md = (tmp_path / "results.md").read_text()
    assert "## Seeds planned from the pilot" in md and "| apmpo | 0, 1 |" in md
    assert "| apmpo | 3 |" in md  # the paired table covers the three seeds
    # rerunning plans the same seeds from the same pilot and trains nothing
    again = runner.run_study(study, report=False, log=lambda _: None)
    assert again.trained == [] and len(again.skipped) == 7

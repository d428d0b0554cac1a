"""Estimators: pass@k against brute-force enumeration, maj@k with ties, aggregation."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apmpo.eval.metrics import (
    ExampleStats,
    aggregate,
    answer_key,
    maj_at_k,
    majority_vote,
    metric_names,
    pass_at_1,
    pass_at_k,
    summarize,
)


def brute_force_pass_at_k(correct: list[bool], k: int) -> Fraction:
    """Fraction of the k-subsets of the samples that contain a correct one."""
    subsets = list(itertools.combinations(range(len(correct)), k))
    hits = sum(any(correct[i] for i in subset) for subset in subsets)
    return Fraction(hits, len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration_exhaustively(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            expected = brute_force_pass_at_k(correct, k)
            assert pass_at_k(n, c, k) == pytest.approx(float(expected), abs=1e-12), (n, c, k)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.data())
def test_pass_at_k_matches_enumeration_on_random_patterns(correct, data):
    k = data.draw(st.integers(1, len(correct)))
    expected = brute_force_pass_at_k(correct, k)
    assert pass_at_k(len(correct), sum(correct), k) == pytest.approx(float(expected), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not.
    value = pass_at_k(1000, 3, 500)
    exact = 1 - Fraction(math.comb(997, 500), math.comb(1000, 500))
    assert value == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(1000, 0, 500) == 0.0
    assert pass_at_k(1000, 501, 500) == 1.0
    assert pass_at_k(10_000, 1, 2) == pytest.approx(2 / 10_000, rel=1e-12)  # 1 - C(9999, 2) / C(10000, 2)


def test_pass_at_k_special_cases():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(np.int64(4), np.int64(2), np.int64(4)) == 1.0  # numpy integers accepted


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((4, 1, 5), ValueError, "at least k = 5"),
        ((4, 5, 1), ValueError, "exceeds n"),
        ((0, 0, 1), ValueError, "n must be >= 1"),
        ((4, -1, 1), ValueError, "c must be >= 0"),
        ((4, 1, 0), ValueError, "k must be >= 1"),
        ((4.0, 1, 1), TypeError, "n must be an integer"),
        ((4, True, 1), TypeError, "boolean"),
    ],
)
def test_pass_at_k_rejects_bad_arguments(args, error, words):
    with pytest.raises(error, match=words):
        pass_at_k(*args)


def test_pass_at_1_is_mean_and_equals_pass_at_k_1():
    correct = [True, False, False, True, True]
    assert pass_at_1(correct) == pytest.approx(0.6)
    assert pass_at_k(5, 3, 1) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no samples"):
        pass_at_1([])


# --------------------------------------------------------------------------- maj@k


def test_majority_vote_clear_winner():
    assert majority_vote(["4", "4", "5"], [True, True, False]) == 1.0
    assert majority_vote(["4", "5", "5"], [True, False, False]) == 0.0


def test_majority_vote_tie_scores_fraction_of_tied_classes_correct():
    # two classes of two votes each, one correct: expected score of a random pick = 1/2
    assert majority_vote(["4", "5", "4", "5"], [True, False, True, False]) == 0.5
    # three-way tie, one correct class
    assert majority_vote(["1", "2", "3"], [False, True, False]) == pytest.approx(1 / 3)
    # tie between two correct classes (e.g. "0.5" and "1/2", both accepted by the verifier)
    assert majority_vote(["0.5", "1/2"], [True, True]) == 1.0
    # a smaller class does not count towards the tie
    assert majority_vote(["7", "7", "8", "8", "9"], [False, False, True, True, True]) == 0.5


def test_majority_vote_tie_break_is_order_independent():
    keys = ["a", "b", "b", "a", "c"]
    correct = [True, False, False, True, False]
    base = majority_vote(keys, correct)
    for perm in itertools.permutations(range(5)):
        assert majority_vote([keys[i] for i in perm], [correct[i] for i in perm]) == base


def test_majority_vote_missing_answers_do_not_vote():
    # one answered sample beats two unanswered ones
    assert majority_vote([None, None, "3"], [False, False, True]) == 1.0
    assert majority_vote([None, None], [False, False]) == 0.0


def test_majority_vote_class_with_mixed_correctness():
    # same key, verifier disagrees on one spelling: expected score of a random member
    assert majority_vote(["x", "x", "y"], [True, False, False]) == 0.5


def test_maj_at_k_averages_disjoint_blocks():
    keys = ["1", "1", "2", "2", "2", "3", "9"]
    correct = [True, True, False, False, False, False, True]
    # blocks of 3: ["1","1","2"] -> correct; ["2","2","3"] -> wrong; the 7th is left out
    assert maj_at_k(keys, correct, 3) == 0.5
    # k = 1: each sample votes alone, so maj@1 equals Pass@1 over the n samples
    assert maj_at_k(keys, correct, 1) == pytest.approx(sum(correct) / len(correct))
    assert maj_at_k(keys, correct, 7) == 0.0  # "2" wins 3 votes to 2
    with pytest.raises(ValueError, match="at least k = 8"):
        maj_at_k(keys, correct, 8)


def test_answer_key_normalisation():
    assert answer_key(" $70.0$ ") == answer_key("70") == "70"
    assert answer_key("\\dfrac{1}{2}") == answer_key("\\frac{1}{2}")
    assert answer_key("\\text{ 5 }.") == "5"
    assert answer_key("1,000") == "1000"
    assert answer_key("\\left( 1, 2 \\right)") == "(1,2)"
    assert answer_key("0.50") == "0.5"
    assert answer_key(None) is None
    assert answer_key("  $ $ ") is None
    assert answer_key("x + 1") == "x+1"
    assert answer_key("3") != answer_key("-3")


# --------------------------------------------------------------------------- aggregation


def _stats(correct, keys=None):
    return ExampleStats(correct=list(correct), keys=list(keys) if keys is not None else [])


def test_aggregate_means_over_examples():
    examples = [
        _stats([True, False, False, False], ["1", "2", "2", "3"]),
        _stats([True, True, True, False], ["5", "5", "5", "6"]),
    ]
    row = aggregate(examples, ks=[1, 2, 4], maj_ks=[4])
    assert row["examples"] == 2 and row["samples"] == 8
    assert row["pass@1"] == pytest.approx((0.25 + 0.75) / 2)
    assert row["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) + pass_at_k(4, 3, 2)) / 2)
    assert row["pass@4"] == 1.0
    assert row["maj@4"] == 0.5
    assert row["answer_rate"] == 1.0
    assert list(metric_names([1, 2, 4], [4])) == ["pass@1", "pass@2", "pass@4", "maj@4"]


def test_summarize_macro_and_micro():
    benchmarks = {
        "a": [_stats([True], ["1"])],
        "b": [_stats([False], ["2"]), _stats([False], ["3"]), _stats([True], ["4"])],
    }
    summary = summarize(benchmarks, ks=[1], maj_ks=[1])
    assert summary["benchmarks"]["a"]["pass@1"] == 1.0
    assert summary["benchmarks"]["b"]["pass@1"] == pytest.approx(1 / 3)
    assert summary["overall"]["pass@1"] == pytest.approx((1 + 1 / 3) / 2)  # macro
    assert summary["all"]["pass@1"] == pytest.approx(2 / 4)  # micro
    assert summary["overall"]["examples"] == 4


def test_aggregate_rejects_k_larger_than_n():
    with pytest.raises(ValueError, match="at least k = 4"):
        aggregate([_stats([True, False])], ks=[4], maj_ks=[])

import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apmpo.rewards import exact_match, parse_choice, parse_number


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        ("The answer is 42.", 42, 1.0),
        ("The answer is 41.", 42, 0.0),
        ("#### 1,234", "1234", 1.0),
        ("so 6*7 = 42 dollars", "42", 1.0),
        ("Answer: 42.0", 42, 1.0),
        ("Answer: 42.5", 42, 0.0),
        ("x = -5", -5, 1.0),
        ("x = −5", -5, 1.0),  # unicode minus
        (r"\boxed{\frac{3}{4}}", 0.75, 1.0),
        (r"\boxed{3/4}", "0.75", 1.0),
        (r"\boxed{3.14159}", 3.14159, 1.0),
        (r"\boxed{3.1416}", 3.14159, 0.0),
        (r"\boxed{0.1}", 0.1, 1.0),
        (r"\boxed{\$12}", 12, 1.0),
        ("Answer: 25%", 25, 1.0),
        ("70", 70.0, 1.0),  # AIME25 / AMC23 store answers as floats
        ("no number at all", 3, 0.0),
        (r"\boxed{}", 3, 0.0),
    ],
)
def test_numbers(completion, gold, expected):
    assert exact_match([completion], [gold]) == [expected]


def test_float_tolerance_is_configurable():
    assert exact_match(["1.0000001"], [1.0]) == [1.0]
    assert exact_match(["1.001"], [1.0]) == [0.0]
    assert exact_match(["1.001"], [1.0], rel_tol=1e-2) == [1.0]
    assert exact_match.configure(abs_tol=0.01)(["1.005"], [1.0]) == [1.0]
    # two integers are compared exactly, never with a tolerance
    assert exact_match(["1000000001"], [1000000000], rel_tol=1e-3) == [0.0]


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        (r"\boxed{B}", "B", 1.0),
        (r"\boxed{\text{(C)}}", "C", 1.0),
        ("Answer: (C)", "C", 1.0),
        ("The answer is b.", "(B)", 1.0),
        ("Answer: C. 42", "C", 1.0),
        ("(B)", "B", 1.0),
        ("B", "B", 1.0),
        ("A cat sat on the mat", "A", 0.0),  # a sentence is not the letter A
        ("Answer: D", "B", 0.0),
        ("Answer: F", "B", 0.0),
        ("Answer: 42", "B", 0.0),
    ],
)
def test_choices(completion, gold, expected):
    assert exact_match([completion], [gold]) == [expected]


def test_strings_and_modes():
    # a dataset column named "choices" (the options of an MC question) is not an option
    assert exact_match(["Answer: B"], answer=["B"], choices=[["1", "2", "3"]]) == [1.0]
    assert exact_match([r"\boxed{Paris}"], ["paris"]) == [1.0]
    assert exact_match([r"\boxed{Paris}"], ["paris"], case_sensitive=True) == [0.0]
    assert exact_match(["Answer: New   York"], ["new york"]) == [1.0]
    assert exact_match([r"\boxed{A}"], ["A"], match_mode="string") == [1.0]
    with pytest.raises(ValueError, match=r"answer\[0\].*not a number"):
        exact_match(["x"], ["Paris"], match_mode="number")
    with pytest.raises(ValueError, match=r"answer\[1\].*not one of the letters"):
        exact_match(["x", "y"], ["A", "7"], match_mode="choice")
    with pytest.raises(ValueError, match="match_mode: expected one of"):
        exact_match.configure(match_mode="fuzzy")


def test_missing_gold_is_not_applicable():
    results = exact_match.score_items(["42", "42"], answer=[None, 42])
    assert [r.score for r in results] == [None, 1.0]
    assert "no gold" in results[0].reason
    assert results[1].answer == "42"


def test_bad_gold_types_name_the_row():
    with pytest.raises(TypeError, match=r"answer\[1\]: expected a string or a number, got list"):
        exact_match(["1", "2"], ["1", [2]])
    with pytest.raises(TypeError, match=r"answer\[0\].*bool"):
        exact_match(["1"], [True])


@pytest.mark.parametrize(
    "completion",
    [
        "1e999999999",
        r"\boxed{1e999999999}",
        "9" * 5000,
        r"\boxed{" + "9" * 5000 + "}",
        "x" * 1_000_000 + " 7",
        "{" * 10_000,
    ],
)
def test_hostile_numbers_are_fast(completion):
    start = time.perf_counter()
    assert exact_match([completion], [7]) in ([0.0], [1.0])
    assert time.perf_counter() - start < 1.0


def test_parse_helpers():
    assert parse_number("1,234.5") == Fraction(2469, 2)
    assert parse_number(r"\frac{-3}{4}") == Fraction(-3, 4)
    assert parse_number(r"-\dfrac{3}{4}") == Fraction(-3, 4)
    assert parse_number("1e3") == 1000
    assert parse_number("1e1000") is None  # exponents are limited to 3 digits
    assert parse_number("1/0") is None
    assert parse_number("abc") is None
    assert parse_choice("(d)") == "D"
    assert parse_choice("F") is None
    assert parse_choice("F", choices="ABCDEF") == "F"


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=-(10**30), max_value=10**30))
@settings(max_examples=200, deadline=None)
def test_integers_match_exactly_when_equal(a, b):
    assert exact_match([f"The answer is {a}."], [b]) == [float(a == b)]
    assert exact_match([f"#### {a:,}"], [str(b)]) == [float(a == b)]


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda x: abs(x) > 1e-3))
@settings(max_examples=200, deadline=None)
def test_float_written_back_matches(x):
    assert exact_match([rf"\boxed{{{x!r}}}"], [x]) == [1.0]
    assert exact_match([rf"\boxed{{{x * 1.01!r}}}"], [x]) == [0.0]

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apmpo.rewards import (
    extract_answer,
    extract_answer_line,
    extract_answer_with_source,
    extract_boxed,
    extract_gsm8k,
    extract_last_number,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{2}", "2"),
        (r"\fbox{x+1}", "x+1"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not count
        (r"\boxed{a} and \boxed{b", "a"),  # an unclosed last box falls back to the earlier one
        (r"\boxed 5 is it", "5"),
        (r"$\boxed {7}$", "7"),
        (r"\boxed{}", ""),
        (r"\boxedx{3}", None),
        ("no box here", None),
        (r"\boxed{" * 5, None),
        (r"\\boxed{3}", None),  # "\\" is a line break, then plain text "boxed"
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: 42", "42"),
        ("The final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("**Final Answer:** 12", "12"),
        ("Answer: 1\nmore text\nANSWER: 2.", "2"),
        ("Let me answer this question carefully", None),
        ("answers: 3", None),
    ],
)
def test_extract_answer_line(text, expected):
    assert extract_answer_line(text) == expected


def test_extract_gsm8k_and_last_number():
    assert extract_gsm8k("steps\n#### 1,234\n") == "1,234"
    assert extract_gsm8k("no marker") is None
    assert extract_last_number("costs 3, then 1,234.5 total, step 7.") == "7"
    assert extract_last_number("total -1,234.5") == "-1234.5"
    assert extract_last_number("none") is None


def test_extract_answer_order_and_sources():
    text = "#### 5\nAnswer: 6\n\\boxed{7}"
    assert extract_answer_with_source(text) == ("7", "boxed")
    assert extract_answer_with_source(text, extractors=("answer", "gsm8k")) == ("6", "answer")
    assert extract_answer("it is 9") is None
    assert extract_answer_with_source("it is 9", last_number=True) == ("9", "last_number")
    with pytest.raises(ValueError, match="unknown extractor 'nope'"):
        extract_answer("x", extractors=("nope",))
    with pytest.raises(ValueError, match="sequence of names"):
        extract_answer("x", extractors="boxed")


def test_window_limits_the_search():
    text = r"\boxed{1}" + "x" * 100
    assert extract_boxed(text, window=50) is None
    assert extract_boxed(text, window=200) == "1"


@pytest.mark.parametrize(
    "text",
    [
        "x" * 1_000_000,
        "{" * 10_000 + "}" * 10_000,
        r"\boxed{" * 10_000,
        r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
        "answer: " * 50_000,
        "1," * 300_000,
        "\\" * 100_001,
        "#### " * 100_000,
    ],
)
def test_hostile_texts_are_fast(text):
    start = time.perf_counter()
    extract_answer(text, last_number=True)
    assert time.perf_counter() - start < 1.0


@st.composite
def balanced(draw, depth=0):
    """Balanced brace text without backslashes."""
    parts = draw(st.lists(st.one_of(st.text(alphabet="abc123+-*/ ^_()", max_size=5), st.just("{}")), max_size=4))
    if depth < 3 and draw(st.booleans()):
        parts.append("{" + draw(balanced(depth + 1)) + "}")
    return "".join(parts)


@given(prefix=st.text(max_size=30).filter(lambda s: "\\" not in s), content=balanced())
@settings(max_examples=150, deadline=None)
def test_boxed_roundtrip(prefix, content):
    found = extract_boxed(prefix + r"\boxed{" + content + "}")
    assert found == content.strip()


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_extractors_never_crash(text):
    for result in (extract_answer(text, last_number=True), extract_boxed(text), extract_answer_line(text)):
        assert result is None or isinstance(result, str)

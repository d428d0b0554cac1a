import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apmpo.rewards import format_reward, overlong_penalty, soft_overlong


@pytest.mark.parametrize(
    "completion, expected",
    [
        (r"so the answer is \boxed{3}", 1.0),
        (r"\boxed{}", 0.0),
        (r"\boxed{3", 0.0),
        ("3", 0.0),
        ("{" * 10_000 + r"\boxed{1}", 1.0),
    ],
)
def test_boxed_format(completion, expected):
    assert format_reward([completion]) == [expected]


THINK = format_reward.configure(require="think")
THINK_ANSWER = format_reward.configure(require="think_answer")
ANSWER_TAG = format_reward.configure(require="answer_tag")


@pytest.mark.parametrize(
    "fn, completion, expected",
    [
        (THINK, "<think>reasoning</think> 42", 1.0),
        (THINK, "  <think>r</think>\n42", 1.0),
        (THINK, "<think>r</think>", 0.0),
        (THINK, "42 <think>r</think> 42", 0.0),
        (THINK, "<think>a</think><think>b</think> 4", 0.0),
        (THINK, "<think>never closed 42", 0.0),
        (THINK_ANSWER, "<think>r</think>\n<answer>42</answer>", 1.0),
        (THINK_ANSWER, "<think>r</think><answer>42</answer> trailing", 0.0),
        (THINK_ANSWER, "<think>r</think> x <answer>42</answer>", 0.0),
        (THINK_ANSWER, "<think>r</think><answer> </answer>", 0.0),
        (ANSWER_TAG, "blah <answer>42</answer>", 1.0),
        (ANSWER_TAG, "</answer>42<answer>", 0.0),
        (ANSWER_TAG, "<answer>1</answer><answer>2</answer>", 0.0),
    ],
)
def test_tag_formats(fn, completion, expected):
    assert fn([completion]) == [expected]


def test_think_prefilled():
    fn = format_reward.configure(require="think", think_prefilled=True)
    assert fn(["reasoning</think> 42"]) == [1.0]
    assert fn(["<think>reasoning</think> 42"]) == [0.0]


def test_format_reasons_and_errors():
    result = format_reward.score_items([r"\boxed{}"])[0]
    assert result.score == 0.0 and "empty" in result.reason
    with pytest.raises(ValueError, match="require: unknown format 'xml'"):
        format_reward.configure(require="xml")
    assert format_reward(["x" * 2_000_001]) == [0.0]


def test_overlong_penalty_values():
    fn = overlong_penalty.configure(max_len=100, cache_len=20)
    lengths = [0, 80, 81, 90, 100, 101, 5000]
    assert fn(["c"] * len(lengths), completion_lengths=lengths) == [0.0, 0.0, -0.05, -0.5, -1.0, -1.0, -1.0]
    ids = [[7] * n for n in (80, 90)]
    assert fn(["a", "b"], completion_ids=ids) == [0.0, -0.5]
    reasons = [r.reason for r in fn.score_items(["a", "b"], completion_lengths=[50, 95])]
    assert "no penalty" in reasons[0] and "soft zone (80, 100]" in reasons[1]


def test_overlong_penalty_errors():
    with pytest.raises(ValueError, match="max_len and cache_len are not set"):
        overlong_penalty(["a"], completion_lengths=[3])
    fn = overlong_penalty.configure(max_len=10, cache_len=5)
    with pytest.raises(TypeError, match="needs token lengths"):
        fn(["a"])
    with pytest.raises(ValueError, match="has 1 values but there are 2 completions"):
        fn(["a", "b"], completion_lengths=[3])
    with pytest.raises(ValueError, match=r"completion_lengths\[1\] must be a non-negative integer"):
        fn(["a", "b"], completion_lengths=[3, -1])
    with pytest.raises(ValueError, match="cache_len: must be <= max_len"):
        overlong_penalty.configure(max_len=10, cache_len=11)
    with pytest.raises(ValueError, match="max_len: expected a positive integer"):
        overlong_penalty.configure(max_len=0, cache_len=1)


@given(
    st.integers(min_value=1, max_value=4096),
    st.integers(min_value=1, max_value=4096),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
)
@settings(max_examples=300, deadline=None)
def test_soft_overlong_is_monotone_and_bounded(max_len, cache_len, a, b):
    cache_len = min(cache_len, max_len)
    pa, pb = soft_overlong(a, max_len, cache_len), soft_overlong(b, max_len, cache_len)
    assert -1.0 <= pa <= 0.0
    if a <= b:
        assert pa >= pb
    if a <= max_len - cache_len:
        assert pa == 0.0
    if a >= max_len:
        assert pa == -1.0

"""TRL's reward contract, structured results, configuration, registry and composition."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apmpo.rewards import (
    REWARDS,
    RewardFunction,
    RewardResult,
    combine,
    completion_text,
    exact_match,
    format_reward,
    get_reward,
    math_accuracy,
    overlong_penalty,
    sql_execution,
)


def trl_call(fn, completions, **columns):
    """Call a reward the way TRL's GRPOTrainer does (extra columns and trainer state included)."""
    return fn(
        prompts=["What is 6*7?"] * len(completions),
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(completions),
        trainer_state=object(),
        num_generations=len(completions),
        **columns,
    )


def test_names_for_trl_logging():
    assert math_accuracy.__name__ == "math_accuracy"
    assert exact_match.__name__ == "exact_match"
    assert format_reward.__name__ == "format_reward"
    assert sql_execution.__name__ == "sql_execution"
    assert overlong_penalty.__name__ == "overlong_penalty"
    assert exact_match.configure(name="arith").__name__ == "arith"
    assert set(REWARDS) == {"math", "exact", "format", "sql", "overlong"}


def test_string_and_chat_completions():
    chats = [
        [{"role": "assistant", "content": "The answer is 42."}],
        [{"role": "assistant", "content": [{"type": "text", "text": "#### 41"}]}],
        [
            {"role": "assistant", "content": "thinking"},
            {"role": "tool", "content": "42"},
            {"role": "assistant", "content": "so 42"},
        ],
    ]
    assert trl_call(exact_match, chats, answer=[42, 42, 42], difficulty=["easy"] * 3) == [1.0, 0.0, 1.0]
    assert trl_call(exact_match, ["42", "so 43"], answer=["42", "42"]) == [1.0, 0.0]
    assert completion_text({"role": "assistant", "content": None}) == ""


def test_bad_completions_name_the_item():
    with pytest.raises(TypeError, match=r"completions\[1\]: expected a string or a list of chat messages, got int"):
        exact_match(["1", 2], answer=[1, 2])
    with pytest.raises(TypeError, match=r"completions\[0\]\[0\]: expected a chat message dict"):
        exact_match([["hi"]], answer=[1])
    with pytest.raises(TypeError, match="completions: expected a list"):
        exact_match("42", answer=[42])


def test_columns_positional_keyword_and_broadcast():
    assert exact_match(["1", "2"], [1, 2]) == [1.0, 1.0]
    assert exact_match(["1", "2"], answer=[1, 2]) == [1.0, 1.0]
    assert exact_match(["1", "1"], answer=1) == [1.0, 1.0]  # a single value is repeated
    assert exact_match([], answer=[]) == []
    with pytest.raises(TypeError, match="exact_match: missing dataset column 'answer'"):
        exact_match(["1"])
    with pytest.raises(ValueError, match="column 'answer' has 3 values but there are 2 completions"):
        exact_match(["1", "2"], answer=[1, 2, 3])
    with pytest.raises(TypeError, match="given both positionally and by keyword"):
        exact_match(["1"], [1], answer=[1])
    with pytest.raises(TypeError, match="at most 1 positional"):
        exact_match(["1"], [1], [2])


def test_score_items_and_last_results():
    results = exact_match.score_items(["Answer: 7", "nothing"], answer=[7, 7])
    assert all(isinstance(r, RewardResult) for r in results)
    assert [r.score for r in results] == [1.0, 0.0]
    assert results[0].answer == "7" and "correct" in results[0].reason
    assert results[1].reason == "no final answer found"
    fn = exact_match.configure()
    scores = fn(["3"], answer=[3])
    assert scores == [1.0] and fn.last_results[0].score == 1.0


def test_configure_validates_and_call_time_options():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['timout_s'\]"):
        math_accuracy.configure(timout_s=1)
    with pytest.raises(ValueError, match="timeout_s: expected a positive number"):
        math_accuracy.configure(timeout_s=0)
    with pytest.raises(ValueError, match="workers: expected a positive integer"):
        math_accuracy.configure(workers=0)
    assert get_reward("math", timeout_s=2.0).options.timeout_s == 2.0
    assert math_accuracy.options.timeout_s == 5.0  # configure returns a copy
    with pytest.raises(KeyError, match="unknown reward 'maths'"):
        get_reward("maths")
    # options by keyword at call time (unknown keywords are dataset columns: ignored)
    assert exact_match(["1.001"], answer=[1.0], rel_tol=0.01, some_column=["x"]) == [1.0]


def test_combine_keeps_parts_and_weights():
    overlong = overlong_penalty.configure(max_len=10, cache_len=4)
    reward = combine("exact", (format_reward, 0.5), (overlong, 2.0), name="total")
    assert isinstance(reward, RewardFunction) and reward.__name__ == "total"
    completions = [r"\boxed{4}", "4", r"\boxed{5}"]
    results = reward.score_items(completions, answer=[4, 4, 4], completion_ids=[[0] * 8, [0] * 3, [0] * 11])
    assert [r.score for r in results] == [1.0 + 0.5 - 1.0, 1.0, 0.5 - 2.0]
    parts = results[0].components
    assert list(parts) == ["exact_match", "format_reward", "overlong_penalty"]
    assert parts["overlong_penalty"].score == -0.5 and "soft zone" in parts["overlong_penalty"].reason
    assert "exact_match=1" in results[0].reason
    assert trl_call(reward, completions, answer=[4, 4, 4]) == [
        r.score for r in reward.score_items(completions, answer=[4, 4, 4], completion_ids=[[1, 2, 3]] * 3)
    ]


def test_combine_skips_parts_that_do_not_apply_and_wraps_plain_callables():
    def length_bonus(completions, **kwargs):
        return [None if c == "skip" else 0.1 * len(c) for c in completions]

    reward = combine(exact_match, (length_bonus, 10.0))
    results = reward.score_items(["3", "skip"], answer=[None, 3])
    assert results[0].score == pytest.approx(1.0)  # exact_match n/a, bonus 10 * 0.1
    assert results[1].score == 0.0  # length bonus n/a, exact_match wrong ("skip" has no number)
    both_none = combine(exact_match, length_bonus).score_items(["skip"], answer=[None])
    assert both_none[0].score is None and "n/a" in both_none[0].reason


def test_combine_errors():
    with pytest.raises(ValueError, match="several parts are named \\['exact_match'\\]"):
        combine(exact_match, exact_match)
    with pytest.raises(KeyError, match="unknown reward name 'mathz'"):
        combine("mathz")
    with pytest.raises(ValueError, match="weight must be a finite number"):
        combine((exact_match, float("nan")))
    with pytest.raises(ValueError, match="needs at least one reward"):
        combine()
    with pytest.raises(TypeError, match="expected a reward function"):
        combine(42)

    def wrong_length(completions, **kwargs):
        return [1.0]

    with pytest.raises(ValueError, match="returned 1 scores for 2 completions"):
        combine(wrong_length)(["a", "b"])


@given(
    st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=6),
    st.floats(min_value=-3, max_value=3, allow_nan=False),
    st.floats(min_value=-3, max_value=3, allow_nan=False),
)
@settings(max_examples=60, deadline=None)
def test_combine_is_the_weighted_sum(values, w1, w2):
    completions = [rf"\boxed{{{v}}}" if v % 2 else str(v) for v in values]
    gold = [v if v % 3 else v + 1 for v in values]
    exact = exact_match(completions, answer=gold)
    fmt = format_reward(completions)
    total = combine((exact_match, w1), (format_reward, w2))(completions, answer=gold)
    assert total == pytest.approx([w1 * e + w2 * f for e, f in zip(exact, fmt)])


def test_a_none_score_has_one_meaning_everywhere():
    """None = no score: 0 in any arithmetic (trainer totals, means, evaluation), left out of combine's sum."""
    from apmpo.rewards import NO_SCORE, combine, score_value
    from apmpo.trainer.setup import RewardFunctions

    assert score_value(None) == NO_SCORE == 0.0 and score_value(0.5) == 0.5

    def half(completions, **_):
        return [0.5] * len(completions)

    def judged(completions, answer, **_):
        return [None if a is None else float(c == a) for c, a in zip(completions, answer)]

    functions = RewardFunctions(["judged", "half"], [1.0, 2.0], [judged, half], [{}, {}])
    total, per_fn = functions.score(["1", "2", "3"], [{"answer": "1"}, {"answer": None}, {"answer": "9"}])
    assert total.tolist() == [2.0, 1.0, 1.0] and per_fn["judged"] == [1.0, 0.0, 0.0]
    both = combine(judged, (half, 2.0))
    assert both(["1", "2"], answer=["1", None]) == [2.0, 1.0]
    assert combine(judged)(["2"], answer=[None]) == [None]  # nothing applies: no score, which a sum adds as 0

"""Built-in synthetic tasks: determinism, disjoint splits, correct answers, option errors."""

import re

import pytest

from apmpo.data import problem_split
from apmpo.data.tasks import evaluate_expression
from apmpo.tasks import BUILTIN_TASKS, get_task, make_task_examples

# The generated arithmetic tasks; the file-backed SQL task is tested in tests/sql, the geometry
# (image) tasks in tests/multimodal.
SYNTHETIC = sorted(name for name in BUILTIN_TASKS if name not in ("sql", "geometry", "geometry3k"))

EXPRESSION = re.compile(r"[0-9+\-* ()]+")


def reference_value(expression: str) -> int:
    """Independent oracle: Python's own arithmetic on our generated (digits/operators only) text."""
    assert EXPRESSION.fullmatch(expression), expression
    return eval(expression, {"__builtins__": {}}, {})  # noqa: S307 - test-generated text only


@pytest.mark.parametrize("task", SYNTHETIC)
def test_deterministic_and_seed_dependent(task):
    a = make_task_examples(task, "train", 50, seed=1)
    assert a == make_task_examples(task, "train", 50, seed=1)
    assert a != make_task_examples(task, "train", 50, seed=2)
    assert make_task_examples(task, "train", 10, seed=1) == a[:10]  # a prefix: n does not reshuffle


@pytest.mark.parametrize("task", SYNTHETIC)
def test_splits_are_disjoint_across_seeds(task):
    train = {e["expression"] for seed in range(3) for e in make_task_examples(task, "train", 2000, seed=seed)}
    evals = {e["expression"] for seed in range(3) for e in make_task_examples(task, "eval", 300, seed=seed)}
    assert len(evals) > 300 and not train & evals
    assert all(problem_split(x, 0.2) == "eval" for x in evals)


@pytest.mark.parametrize(
    "task, options",
    [
        ("arithmetic", {}),
        ("arithmetic", {"digits": 3, "ops": "+-*", "mul_digits": (1, 2), "allow_negative": True}),
        ("arithmetic", {"digits": "1-3", "ops": ["-"]}),
        ("multistep", {}),
        ("multistep", {"operands": (2, 5), "digits": (1, 2), "parentheses": 0.5, "allow_negative": True}),
    ],
)
def test_answers_are_correct(task, options):
    examples = make_task_examples(task, "train", 300, seed=7, **options)
    for example in examples:
        assert example["answer"] == str(reference_value(example["expression"]))
        assert example["expression"] in example["prompt"] and example["task"] == task
    if not options.get("allow_negative"):
        assert all(int(e["answer"]) >= 0 for e in examples)


def test_arithmetic_knobs_are_respected():
    examples = make_task_examples("arithmetic", "train", 300, digits=2, ops="*", mul_digits=1)
    for example in examples:
        a, op, b = example["expression"].split()
        assert op == "*" and 0 <= int(a) <= 9 and 0 <= int(b) <= 9
    examples = make_task_examples("arithmetic", "train", 300, digits=3, ops="-")
    assert all(100 <= int(x) <= 999 for e in examples for x in e["expression"].split(" - "))
    default = make_task_examples("arithmetic", "eval", 200)
    assert {e["expression"].split()[1] for e in default} == {"+"}
    assert {len(x) for e in default for x in e["expression"].split(" + ")} == {1, 2}


def test_multistep_parentheses_and_precedence():
    examples = make_task_examples("multistep", "train", 200, parentheses=1.0, operands=4)
    assert all(e["expression"].count("(") == 1 == e["expression"].count(")") for e in examples)
    assert not any(e["expression"].startswith("(") and e["expression"].endswith(")") for e in examples)
    assert evaluate_expression([7, 5, 3, 2], ["+", "*", "-"]) == 20
    assert evaluate_expression([2, 3, 4], ["-", "-"]) == -5
    assert evaluate_expression([2, 3, 4], ["*", "*"]) == 24


def test_prompt_format_and_template_override():
    example = make_task_examples("arithmetic", "eval", 1)[0]
    assert example["prompt"] == f"What is {example['expression']}? Answer with just the number."
    bare = make_task_examples("arithmetic", "eval", 1, template="{expression}=")[0]
    assert bare["prompt"] == bare["expression"] + "="
    plain = make_task_examples("arithmetic", "eval", 1, instruction="")[0]
    assert plain["prompt"] == f"What is {plain['expression']}?"


def test_eval_unique_and_small_space_error():
    examples = make_task_examples("arithmetic", "eval", 15, digits=1, ops="+")
    assert len({e["expression"] for e in examples}) == 15
    with pytest.raises(ValueError, match=r"found only \d+ distinct eval problems .* unique=False"):
        make_task_examples("arithmetic", "eval", 100, digits=1, ops="+")
    repeated = make_task_examples("arithmetic", "eval", 100, digits=1, ops="+", unique=False)
    assert len(repeated) == 100


def test_option_and_argument_errors():
    with pytest.raises(ValueError, match="unknown task 'countdown'; built-in tasks: arithmetic, multistep"):
        get_task("countdown")
    with pytest.raises(ValueError, match="unknown option\\(s\\) digit; known: digits"):
        make_task_examples("arithmetic", "train", 5, digit=2)
    with pytest.raises(ValueError, match="split must be one of"):
        make_task_examples("arithmetic", "test", 5)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        make_task_examples("arithmetic", "train", 0)
    with pytest.raises(ValueError, match="ops must be a non-empty selection"):
        make_task_examples("arithmetic", "train", 5, ops="/")
    with pytest.raises(ValueError, match="digits must satisfy"):
        make_task_examples("arithmetic", "train", 5, digits=(3, 1))
    with pytest.raises(ValueError, match="operands must be at least 2"):
        make_task_examples("multistep", "train", 5, operands=1)
    with pytest.raises(ValueError, match="eval_fraction must be in"):
        make_task_examples("multistep", "train", 5, eval_fraction=1.0)
    with pytest.raises(ValueError, match="must contain \\{expression\\}"):
        make_task_examples("multistep", "train", 5, template="What?")


def test_task_specs_describe_their_defaults():
    for name in SYNTHETIC:
        spec = BUILTIN_TASKS[name]
        assert spec.name == name and spec.default_reward == "exact" and spec.template == "{prompt}"
        assert spec.make("eval", 3) == make_task_examples(name, "eval", 3)
        assert set(spec.options) >= {"digits", "ops", "eval_fraction", "template", "instruction"}


def test_tiny_tokenizer_covers_task_prompts():
    from apmpo.models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    for name in SYNTHETIC:
        options = {"multistep": {"parentheses": 0.5}}.get(name, {})
        for example in make_task_examples(name, "train", 20, **options):
            ids = tokenizer(example["prompt"] + example["answer"])["input_ids"]
            assert tokenizer.unk_token_id not in ids
            assert tokenizer.decode(ids) == example["prompt"] + example["answer"]

"""load_examples on the shipped benchmark files and on small files written here."""

import json
from pathlib import Path

import pytest

from apmpo.data import load_examples, shipped_path
from apmpo.data.answers import AnswerError, answer_after_marker, last_boxed, normalize_answer
from tests.helpers import write_jsonl

# (shipped file, rows, prompt column, answer source, first answer)
SHIPPED_FILES = [
    ("aime24/test.jsonl", 30, "problem", "answer", "204"),
    ("aime25/test.jsonl", 30, "question", "answer", "70"),
    ("amc23/test.jsonl", 40, "problem", "answer", "27"),
    ("math500/test.jsonl", 500, "problem", "answer", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("olympiadbench/test.jsonl", 675, "question", "final_answer", "2"),
    ("gsm8k/test.jsonl", 1319, "question", "answer", "18"),
    ("gsm8k/train.jsonl", 7473, "question", "answer", "72"),
]


def shipped(name: str) -> Path:
    """A benchmark file shipped with apmpo (apmpo/data/datasets), by its path there."""
    return shipped_path(name)


# ------------------------------------------------------------------ shipped benchmark files


@pytest.mark.parametrize("name, rows, prompt_column, answer_source, first", SHIPPED_FILES)
def test_shipped_benchmark_layouts(name, rows, prompt_column, answer_source, first):
    examples = load_examples(shipped(name))
    assert len(examples) == rows and examples.skipped == 0
    assert examples.prompt_column == prompt_column
    assert examples.answer_source == answer_source
    assert examples[0]["answer"] == first
    for example in examples:
        assert isinstance(example["prompt"], str) and example["prompt"].strip()
        answer = example["answer"]
        assert isinstance(answer, str) and answer and answer == answer.strip()


def test_shipped_float_answers_are_integers_as_text():
    for name in ("aime25/test.jsonl", "amc23/test.jsonl"):
        answers = [e["answer"] for e in load_examples(shipped(name))]
        assert all(not a.endswith(".0") for a in answers), answers


def test_shipped_olympiadbench_multiple_answers_and_columns_kept():
    examples = load_examples(shipped("olympiadbench/test.jsonl"))
    multi = [e for e in examples if e["is_multiple_answer"]]
    assert multi and all(isinstance(e["final_answer"], list) for e in multi)
    for example in examples:
        if len(example["final_answer"]) == 1:
            assert example["answer"] == example["final_answer"][0].strip()
    assert "question" not in examples[0]  # the prompt source column is moved to "prompt"
    assert {"answer_type", "unit", "subfield"} <= set(examples[0])


# Minerva Math is not shipped (licence); its layout (problem, solution with the answer in
# its last \\boxed{}, type, idx) is reproduced by these rows written here.
MINERVA_LAYOUT = [
    {"problem": "A star has a parallax of $0.1$ arcsec. How far is it, in parsecs?",
     "solution": "The distance is $1 / 0.1 = \\boxed{10}$ parsecs.", "type": "Astronomy", "idx": 0},
    {"problem": "Give the set $\\{x : x^2 = 1\\}$.",
     "solution": "First $\\boxed{x}$ is a placeholder; the set is $\\boxed{\\{-1, 1\\}}$.", "type": "Algebra", "idx": 1},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "It is \\boxed{\\frac{1}{2}}.", "type": "Algebra", "idx": 2},
]


def test_minerva_layout_boxed_answers_are_balanced(tmp_path):
    examples = load_examples(write_jsonl(tmp_path / "minerva_math" / "test.jsonl", MINERVA_LAYOUT))
    assert examples.prompt_column == "problem" and examples.answer_source == "solution (last \\boxed{})"
    assert [e["answer"] for e in examples] == ["10", "\\{-1, 1\\}", "\\frac{1}{2}"]
    for example in examples:
        answer = example["answer"]
        assert answer.count("{") - answer.count("\\{") == answer.count("}") - answer.count("\\}")
        assert "\\boxed" not in answer


def test_shipped_gsm8k_keeps_the_rationale_and_strips_thousands_separators():
    examples = load_examples(shipped("gsm8k/train.jsonl"))
    assert examples[0]["solution"].endswith("#### 72")
    assert all("," not in e["answer"] for e in examples)
    assert any(e["solution"].rstrip().endswith("#### 1,080") and e["answer"] == "1080" for e in examples)


def test_shipped_math_train_null_answers_error_then_skip():
    path = shipped("math_train/train.jsonl")
    with pytest.raises(ValueError) as info:
        load_examples(path)
    message = str(info.value)
    assert str(path) in message and "line 887" in message and "'answer'" in message and "null" in message
    examples = load_examples(path, on_bad_row="skip")
    assert len(examples) == 7470 and examples.skipped == 4
    assert [row.where for row in examples.skipped_rows][:2] == ["line 887", "line 1010"]
    assert examples.skip_reasons() == {"answer: the answer is null": 2, "answer: the answer is an empty string": 2}
    assert "4 rows skipped" in examples.summary()


def test_shipped_explicit_mapping_overrides_detection():
    examples = load_examples(shipped("aime24/test.jsonl"), prompt_column="question", answer_column="id")
    assert examples.prompt_column == "question" and examples.answer_source == "id"
    assert examples[0]["answer"] == "60" and "problem" in examples[0]
    boxed = load_examples(shipped("math500/test.jsonl"), answer_from_solution=True)
    assert boxed.answer_source == "solution (last \\boxed{})"
    plain = load_examples(shipped("math500/test.jsonl"))
    same = sum(a["answer"] == b["answer"] for a, b in zip(boxed, plain))
    assert same >= 0.95 * len(plain)  # the boxed answer is the stored answer, up to spacing


def test_shipped_limit_and_to_dataset():
    examples = load_examples(shipped("olympiadbench/test.jsonl"), limit=20)
    assert len(examples) == 20
    dataset = examples.to_dataset()
    assert dataset.num_rows == 20 and dataset[3]["answer"] == examples[3]["answer"]


# ------------------------------------------------------------------ files written here


def write_parquet(path: Path, rows) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


ROWS = [
    {"question": "What is 2 + 2?", "answer": 4.0, "db_path": "a.db"},
    {"question": "Name a prime.", "answer": "7", "db_path": "b.db"},
    {"question": "Pair?", "answer": [1, 2.5], "db_path": "c.db"},
]


@pytest.mark.parametrize("kind", ["jsonl", "json", "json_wrapped", "json_columnar", "parquet"])
def test_written_formats_agree(tmp_path, kind):
    if kind == "jsonl":
        path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    elif kind == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(ROWS))
    elif kind == "json_wrapped":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"data": ROWS}))
    elif kind == "json_columnar":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({k: [r[k] for r in ROWS] for k in ROWS[0]}))
    else:
        path = write_parquet(tmp_path / "d.parquet", [dict(r, answer=float(r["answer"])) for r in ROWS[:2]])
    examples = load_examples(path)
    assert examples[0] == {"prompt": "What is 2 + 2?", "answer": "4", "db_path": "a.db"}
    assert examples[1]["answer"] == "7"
    if kind != "parquet":
        assert examples[2]["answer"] == "1, 2.5"


def test_json_lines_with_a_json_suffix(tmp_path):
    path = write_jsonl(tmp_path / "d.json", ROWS[:2])
    assert [e["answer"] for e in load_examples(path)] == ["4", "7"]


def test_csv_with_mapping_and_multiline_field(tmp_path):
    path = write_csv(tmp_path / "d.csv", 'q,gold,db\n"two\nlines",5,x.db\nthird,6,y.db\n')
    examples = load_examples(path, prompt_column="q", answer_column="gold", columns={"db_path": "db"})
    assert examples.examples == [
        {"prompt": "two\nlines", "answer": "5", "db_path": "x.db"},
        {"prompt": "third", "answer": "6", "db_path": "y.db"},
    ]


def test_columns_list_keeps_only_those(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "p", "answer": "1", "a": 1, "b": 2}])
    assert load_examples(path, columns=["b"]).examples == [{"prompt": "p", "answer": "1", "b": 2}]
    assert load_examples(path).examples == [{"prompt": "p", "answer": "1", "a": 1, "b": 2}]


def test_boxed_fallback_and_forced_boxed(tmp_path):
    rows = [{"problem": "p", "solution": "so \\boxed{\\frac{1}{2}} and finally \\boxed{ 3 }"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    examples = load_examples(path)
    assert examples[0]["answer"] == "3" and examples[0]["solution"] == rows[0]["solution"]
    with pytest.raises(ValueError, match="no answer column found"):
        load_examples(path, answer_from_solution=False)
    path2 = write_jsonl(tmp_path / "e.jsonl", [{"problem": "p", "answer": "9", "work": "\\boxed{8}"}])
    assert load_examples(path2)[0]["answer"] == "9"
    assert load_examples(path2, answer_from_solution="work")[0]["answer"] == "8"
    with pytest.raises(ValueError, match="name different columns"):
        load_examples(path2, answer_column="answer", answer_from_solution="work")


def test_marker_can_be_disabled(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "work\n#### 1,234"}])
    assert load_examples(path)[0]["answer"] == "1234"
    assert load_examples(path, answer_marker=None)[0]["answer"] == "work\n#### 1,234"


# ------------------------------------------------------------------ error messages


def error_of(path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        load_examples(path, **kwargs)
    return str(info.value)


def test_error_malformed_json_line_has_exact_line_number(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n\n{"prompt": "b", "answer": "2"}\n{"prompt": "c", "answer": \n')
    message = error_of(path)
    assert message.startswith(f"{path}: line 4: malformed JSON")
    examples = load_examples(path, on_bad_row="skip")
    assert len(examples) == 2 and examples.skipped_rows[0].where == "line 4"


def test_error_non_object_line_and_invalid_utf8(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "a", "answer": "1"}\n[1, 2]\n{"prompt": "\xff", "answer": "1"}\n')
    assert "line 2: expected a JSON object, got list" in error_of(path)
    examples = load_examples(path, on_bad_row="skip")
    assert [r.where for r in examples.skipped_rows] == ["line 2", "line 3"]
    assert "not valid UTF-8" in examples.skipped_rows[1].reason


def test_error_missing_explicit_column_lists_available(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "p", "answer": "1", "level": 3}])
    message = error_of(path, prompt_column="question")
    assert str(path) in message and "line 1" in message and "'question'" in message
    assert "available columns: problem, answer, level" in message
    # a mapping mismatch is never skipped
    assert "available columns" in error_of(path, prompt_column="question", on_bad_row="skip")


def test_error_no_detectable_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "p", "label": "1"}])
    message = error_of(path)
    assert "line 1, field 'prompt': no prompt column found" in message and "available columns: text, label" in message
    message = error_of(path, prompt_column="text")
    assert "field 'answer': no answer column found" in message


def test_error_empty_prompt_names_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "  ", "answer": "2"}])
    assert error_of(path).startswith(f"{path}: line 2, field 'problem': empty prompt")


def test_error_non_string_prompt(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": 5, "answer": "1"}])
    assert "line 1, field 'prompt': the prompt must be a string, got int" in error_of(path)


@pytest.mark.parametrize(
    "value, reason",
    [({"a": 1}, "a value of type dict"), (True, "a boolean"), (None, "null"), ("", "empty string"),
     ([], "empty list"), (float("nan"), "not finite")],
)
def test_error_unconvertible_answer(tmp_path, value, reason):
    path = tmp_path / "d.jsonl"
    rows = [json.dumps({"prompt": "ok", "answer": "1"}), json.dumps({"prompt": "q", "answer": value})]
    path.write_text("\n".join(rows) + "\n")
    message = error_of(path)
    assert message.startswith(f"{path}: line 2, field 'answer': ") and reason in message
    assert "on_bad_row='skip'" in message


def test_error_row_missing_the_column_later(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"}, {"prompt": "b"}])
    assert "line 2, field 'answer': missing in this row; available columns: prompt" in error_of(path)


def test_error_boxed_missing(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "p", "solution": "no box here"}])
    assert "line 1, field 'solution': no \\boxed{...} answer found" in error_of(path)


def test_error_csv_rows(tmp_path):
    path = write_csv(tmp_path / "d.csv", "prompt,answer\na,1\nb,2,extra\n\"c\nd\",\nshort\n")
    message = error_of(path)
    assert message.startswith(f"{path}: row 2 (line 3): 3 fields but the header has 2")
    examples = load_examples(path, on_bad_row="skip")
    assert [e["prompt"] for e in examples] == ["a"]
    assert [(r.where, r.field) for r in examples.skipped_rows] == [
        ("row 2 (line 3)", None), ("row 3 (line 5)", "answer"), ("row 4 (line 6)", None)]


def test_error_csv_header_without_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", "prompt,gold\na,1\n")
    message = error_of(path)
    assert message.startswith(f"{path}: header, field 'answer': no answer column found")


def test_error_parquet_null_answer_names_row(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": None}])
    assert error_of(path).startswith(f"{path}: row 2, field 'answer': the answer is null")
    assert error_of(tmp_path / "d.parquet", prompt_column="x").startswith(f"{path}: header, field 'x'")


def test_error_bad_files_and_arguments(tmp_path):
    assert "unsupported file type '.txt'" in error_of(write_csv(tmp_path / "d.txt", "x"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_examples(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": [1, 2}')
    assert f"{bad}: malformed JSON" in error_of(bad)
    notparquet = write_csv(tmp_path / "x.parquet", "not parquet")
    assert "not a readable Parquet file" in error_of(notparquet)
    good = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "a", "answer": "1"}])
    assert "on_bad_row must be one of" in error_of(good, on_bad_row="ignore")
    assert "limit must be a positive integer" in error_of(good, limit=0)
    assert "'prompt' is reserved" in error_of(good, columns={"prompt": "answer"})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert "no usable examples" in error_of(empty)
    allbad = write_jsonl(tmp_path / "allbad.jsonl", [{"prompt": "", "answer": "1"}])
    assert "no usable examples; 1 rows skipped: prompt: empty prompt x1" in error_of(allbad, on_bad_row="skip")


# ------------------------------------------------------------------ answer helpers


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("a \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("good \\boxed{7} broken \\boxed{8", "7"),
        ("\\boxed 5 done", "5"),
        ("\\fbox{x^2}", "x^2"),
        ("\\boxed{}", None),
        ("nothing", None),
        ("\\boxedx{3}", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "value, expected",
    [(70.0, "70"), (0.5, "0.5"), (-3.0, "-3"), (12, "12"), (" 3 ", "3"), (["$2$"], "$2$"), ([1, "x"], "1, x")],
)
def test_normalize_answer(value, expected):
    assert normalize_answer(value) == expected


def test_normalize_answer_numpy_and_refusals():
    np = pytest.importorskip("numpy")
    assert normalize_answer(np.float64(27.0)) == "27"
    assert normalize_answer(np.array(["a", "b"])) == "a, b"
    for bad in (None, True, {"a": 1}, float("inf"), "   ", []):
        with pytest.raises(AnswerError):
            normalize_answer(bad)


def test_answer_after_marker():
    assert answer_after_marker("x\n#### 1,080") == "1080"
    assert answer_after_marker("x\n#### 1,2") == "1,2"
    assert answer_after_marker("no marker") is None
    assert answer_after_marker("x\n####   ") is None

"""Loaders for the Spider and BIRD layouts: the shipped benchmark, built folders, every error."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from apmpo.data.sql import (
    SQL_INSTRUCTION,
    SQLBENCH_ROOT,
    check_sqlite_file,
    find_sql_split,
    load_sql_examples,
    make_sql_task,
)

from .conftest import BIRD_ROWS, SPIDER_ROWS, make_db, write_json

EXAMPLE_KEYS = {"prompt", "answer", "question", "gold_sql", "db_id", "db_path", "evidence", "schema"}


# ---------------------------------------------------------------------------- shipped benchmark


@pytest.mark.parametrize("split,file", [("train", "train_spider.json"), ("dev", "dev.json"), ("eval", "dev.json")])
def test_shipped_benchmark_loads_every_row(split, file):
    rows = json.loads((SQLBENCH_ROOT / file).read_text())
    examples = load_sql_examples(SQLBENCH_ROOT, split=split)
    assert len(examples) == len(rows) and examples.skipped == 0
    assert examples.path == str(SQLBENCH_ROOT / file)
    for example, row in zip(examples, rows):
        assert EXAMPLE_KEYS <= set(example)
        assert example["question"] == row["question"] and example["gold_sql"] == row["query"] == example["answer"]
        assert Path(example["db_path"]).is_absolute() and Path(example["db_path"]).is_file()
        assert Path(example["db_path"]).parent.name == example["db_id"] == row["db_id"]
        assert example["prompt"].startswith("Database schema (SQLite):")
        assert f"Question: {row['question']}" in example["prompt"]
        assert example["prompt"].endswith(SQL_INSTRUCTION)
        assert ("External knowledge: " + row["evidence"] in example["prompt"]) == bool(row["evidence"])
        assert "gold_result" not in example  # lists are not passed on as reward kwargs
        assert example["category"] == row["category"] and example["difficulty"] == row["difficulty"]


def test_shipped_benchmark_shape():
    train = json.loads((SQLBENCH_ROOT / "train_spider.json").read_text())
    dev = json.loads((SQLBENCH_ROOT / "dev.json").read_text())
    assert 250 <= len(train) + len(dev) <= 500 and len(dev) >= 50
    assert {r["db_id"] for r in train} == {r["db_id"] for r in dev} == {"shop", "school", "library"}
    questions = [r["question"] for r in train + dev]
    assert len(set(questions)) == len(questions)  # no question in both splits, none repeated
    pairs = [(r["db_id"], r["query"]) for r in train + dev]
    assert len(set(pairs)) == len(pairs)
    assert {r["category"] for r in train} >= {"select", "filter", "aggregate", "group", "order", "join", "nested"}
    assert any(r["evidence"] for r in dev) and any(r["evidence"] for r in train)
    assert all(r["gold_result"] for r in train + dev)
    size = sum(p.stat().st_size for p in SQLBENCH_ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 2_000_000


# ---------------------------------------------------------------------------- Spider layout


def test_spider_folder_and_file(spider_root):
    by_folder = load_sql_examples(spider_root, split="train")
    by_file = load_sql_examples(spider_root / "train_spider.json")
    assert [e["question"] for e in by_folder] == [r["question"] for r in SPIDER_ROWS]
    assert list(by_folder) == list(by_file)
    first = by_folder[0]
    assert first["gold_sql"] == "SELECT count(*) FROM singer" and first["evidence"] == ""
    assert first["db_path"] == str((spider_root / "database" / "concerts" / "concerts.sqlite").absolute())
    assert "query_toks" not in first and "sql" not in first  # Spider's parse trees are dropped
    assert "CREATE TABLE singer" in first["prompt"] and "CREATE TABLE concert" in first["prompt"]
    assert by_folder.answer_source == "query" and by_folder.prompt_column == "question"
    assert len(load_sql_examples(spider_root)) == 1  # default split: dev


def test_find_sql_split(spider_root, bird_root):
    assert find_sql_split(spider_root, "train") == (spider_root / "train_spider.json", spider_root / "database")
    assert find_sql_split(spider_root, "validation") == (spider_root / "dev.json", spider_root / "database")
    assert find_sql_split(bird_root, "dev") == (bird_root / "dev" / "dev.json", bird_root / "dev" / "dev_databases")
    assert find_sql_split(bird_root / "train", "train") == (
        bird_root / "train" / "train.json", bird_root / "train" / "train_databases")


# ---------------------------------------------------------------------------- BIRD layout


def test_bird_layout_with_evidence(bird_root):
    examples = load_sql_examples(bird_root, split="dev")
    assert examples.answer_source == "SQL" and len(examples) == 2
    first, second = examples
    assert first["evidence"] == "veteran refers to age > 40"
    assert "External knowledge: veteran refers to age > 40" in first["prompt"]
    assert "External knowledge" not in second["prompt"]
    assert first["question_id"] == 0 and first["difficulty"] == "simple"
    plain = load_sql_examples(bird_root / "dev" / "dev.json", use_evidence=False)
    assert "External knowledge" not in plain[0]["prompt"]
    assert plain[0]["evidence"] == "veteran refers to age > 40"  # still a column
    assert len(load_sql_examples(bird_root / "train", split="train")) == 2  # a BIRD split folder itself


def test_jsonl_with_explicit_db_root_layout_and_limit(tmp_path):
    make_db(tmp_path / "dbs" / "concerts" / "concerts.sqlite")
    lines = [json.dumps(row) for row in BIRD_ROWS]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(lines) + "\n\n")
    examples = load_sql_examples(questions, db_root=tmp_path / "dbs", layout="bird", limit=1)
    assert len(examples) == 1 and examples[0]["gold_sql"] == BIRD_ROWS[0]["SQL"]
    custom = load_sql_examples(questions, db_root=tmp_path / "dbs", instruction="")
    assert custom[0]["prompt"].endswith(f"Question: {BIRD_ROWS[0]['question']}")


def test_to_dataset_keeps_reward_columns(spider_root):
    dataset = load_sql_examples(spider_root, split="train").to_dataset()
    assert {"prompt", "gold_sql", "db_path"} <= set(dataset.column_names) and len(dataset) == 2


def test_make_sql_task():
    everything = list(load_sql_examples(SQLBENCH_ROOT, split="train"))
    assert make_sql_task("train", None) == everything
    assert make_sql_task("train", 10**6) == everything  # a file-backed split has a fixed size
    subset = make_sql_task("train", 20, seed=3)
    assert len(subset) == 20 and subset == make_sql_task("train", 20, seed=3)
    assert subset != make_sql_task("train", 20, seed=4)
    positions = [everything.index(e) for e in subset]
    assert positions == sorted(positions) and len({e["db_id"] for e in subset}) == 3
    assert len(make_sql_task("eval", None)) == len(json.loads((SQLBENCH_ROOT / "dev.json").read_text()))
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        make_sql_task("dev", 3)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        make_sql_task("train", 0)


def test_sql_task_spec():
    import inspect

    from apmpo.data.sql import SQL_TASK_OPTIONS
    from apmpo.tasks import BUILTIN_TASKS

    spec = BUILTIN_TASKS["sql"]
    assert spec.name == "sql" and spec.default_reward == "sql"
    assert spec.make is make_sql_task and dict(spec.options) == SQL_TASK_OPTIONS

    parameters = inspect.signature(make_sql_task).parameters
    assert set(SQL_TASK_OPTIONS) == {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert all(parameters[name].default == value for name, value in SQL_TASK_OPTIONS.items())


def test_make_sql_task_on_a_user_folder(bird_root):
    examples = make_sql_task("eval", 1, root=bird_root, sample_rows=1)
    assert examples[0]["db_id"] == "concerts" and "example row from table singer" in examples[0]["prompt"]


# ---------------------------------------------------------------------------- errors


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_database_names_row_db_id_and_expected_path(spider_root):
    rows = SPIDER_ROWS + [{"db_id": "nowhere", "question": "q?", "query": "SELECT 1"}]
    write_json(spider_root / "dev.json", rows)
    expected = (spider_root / "database" / "nowhere" / "nowhere.sqlite").absolute()
    with pytest.raises(ValueError) as info:
        load_sql_examples(spider_root)
    message = str(info.value)
    assert str(spider_root / "dev.json") in message and "row 3" in message and "field 'db_id'" in message
    assert "database 'nowhere' not found" in message and str(expected) in message


def test_file_that_is_not_sqlite(spider_root):
    fake = spider_root / "database" / "fake" / "fake.sqlite"
    fake.parent.mkdir(parents=True)
    fake.write_text("CREATE TABLE t (x);\n")
    write_json(spider_root / "dev.json", [{"db_id": "fake", "question": "q?", "query": "SELECT 1"}])
    with pytest.raises(ValueError, match=r"row 1, field 'db_id': database 'fake': .*fake\.sqlite: is not a SQLite "
                                         r"database \(it starts with b'CREATE TABLE t \(', a SQLite file starts"):
        load_sql_examples(spider_root)
    fake.write_bytes(b"")
    with pytest.raises(ValueError, match=r"fake\.sqlite: is empty, not a SQLite database"):
        load_sql_examples(spider_root)


def test_check_sqlite_file(tmp_path):
    db = make_db(tmp_path / "a.sqlite")
    assert check_sqlite_file(db) == db.absolute()
    with pytest.raises(FileNotFoundError, match="no such file"):
        check_sqlite_file(tmp_path / "missing.sqlite")
    with pytest.raises(ValueError, match="is not a file"):
        check_sqlite_file(tmp_path)


def test_corrupt_database_after_a_valid_header(spider_root):
    db = spider_root / "database" / "broken" / "broken.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    write_json(spider_root / "dev.json", [{"db_id": "broken", "question": "q?", "query": "SELECT 1"}])
    with pytest.raises(ValueError, match=r"row 1, field 'db_id': database 'broken': .*broken\.sqlite: cannot"):
        load_sql_examples(spider_root)


@pytest.mark.parametrize(
    "row,field,reason",
    [
        ({"db_id": "concerts", "query": "SELECT 1"}, "question", r"missing \(this row has db_id, query\)"),
        ({"db_id": "concerts", "question": "  ", "query": "SELECT 1"}, "question", "empty"),
        ({"db_id": "concerts", "question": "q?", "query": 7}, "query", "expected a string, got int"),
        ({"db_id": "concerts", "question": "q?", "query": ""}, "query", "empty"),
        ({"question": "q?", "query": "SELECT 1"}, "db_id", "missing"),
        ({"db_id": "../concerts", "question": "q?", "query": "SELECT 1"}, "db_id", r"'\.\./concerts' is not a plain folder name"),
        ({"db_id": "concerts", "question": "q?", "query": "SELECT 1", "evidence": 3}, "evidence",
         "expected a string, got int"),
    ],
)
def test_malformed_row_names_file_row_and_field(spider_root, row, field, reason):
    write_json(spider_root / "dev.json", SPIDER_ROWS + [row])
    pattern = re.escape(f"{spider_root / 'dev.json'}: row 3, field '{field}': ") + reason
    with pytest.raises(ValueError, match=pattern):
        load_sql_examples(spider_root)


def test_malformed_files(tmp_path, spider_root):
    bad_json = spider_root / "dev.json"
    bad_json.write_text('[{"db_id": "concerts",')
    with pytest.raises(ValueError, match=r"dev\.json: malformed JSON \(.* at line 1, column \d+\)"):
        load_sql_examples(spider_root)
    bad_json.write_text('{"db_id": "concerts"}')
    with pytest.raises(ValueError, match="expected a JSON array of objects, an object holding one such array, or an object of equal-length column lists; got dict"):
        load_sql_examples(spider_root)
    write_json(bad_json, ["just a string"])
    with pytest.raises(ValueError, match="row 1: expected a JSON object, got str"):
        load_sql_examples(spider_root)
    lines = spider_root / "dev.jsonl"
    lines.write_text(json.dumps(SPIDER_ROWS[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"dev\.jsonl: line 2: malformed JSON"):
        load_sql_examples(lines)
    write_json(bad_json, [{"db_id": "concerts", "question": "q?", "sql": "SELECT 1"}])
    with pytest.raises(ValueError, match="row 1: cannot tell the layout: .* this row has db_id, question, sql"):
        load_sql_examples(spider_root)
    text = tmp_path / "questions.csv"
    text.write_text("question\n")
    with pytest.raises(ValueError, match=r"expected a \.json or \.jsonl questions file, got '\.csv'"):
        load_sql_examples(text)


def test_missing_paths(tmp_path, spider_root):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_sql_examples(tmp_path / "nothing.json")
    with pytest.raises(FileNotFoundError, match=r"no dev split found; looked for dev\.json with database/; "
                                                r"dev/dev\.json with dev/dev_databases/"):
        load_sql_examples(tmp_path)
    lonely = write_json(tmp_path / "alone" / "dev.json", SPIDER_ROWS)
    with pytest.raises(FileNotFoundError, match=r"no database folder found beside it \(looked for database/, "
                                                r"dev_databases/, dev_database/\); pass db_root="):
        load_sql_examples(lonely)
    with pytest.raises(FileNotFoundError, match="db_root .*: no such folder"):
        load_sql_examples(lonely, db_root=tmp_path / "nope")
    with pytest.raises(ValueError, match="split must be one of"):
        load_sql_examples(spider_root, split="holdout")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"layout": "wikisql"}, "layout must be 'auto', 'spider' or 'bird'"),
        ({"on_bad_row": "ignore"}, "on_bad_row must be one of"),
        ({"limit": 0}, "limit must be a positive integer"),
        ({"sample_rows": -1}, r"sample_rows must be an integer in \[0, 20\]"),
        ({"sample_rows": True}, r"sample_rows must be an integer in \[0, 20\]"),
    ],
)
def test_bad_arguments(spider_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_sql_examples(spider_root, **kwargs)


def test_skip_and_count(spider_root):
    fake = spider_root / "database" / "fake" / "fake.sqlite"
    fake.parent.mkdir(parents=True)
    fake.write_text("not a database")
    rows = [
        SPIDER_ROWS[0],
        {"db_id": "nowhere", "question": "q1?", "query": "SELECT 1"},
        {"db_id": "concerts", "question": "q2?"},
        {"db_id": "fake", "question": "q3?", "query": "SELECT 1"},
        {"db_id": "nowhere", "question": "q4?", "query": "SELECT 1"},
        SPIDER_ROWS[1],
    ]
    write_json(spider_root / "dev.json", rows)
    examples = load_sql_examples(spider_root, on_bad_row="skip")
    assert [e["question"] for e in examples] == [SPIDER_ROWS[0]["question"], SPIDER_ROWS[1]["question"]]
    assert examples.skipped == 4
    assert [(s.where, s.field) for s in examples.skipped_rows] == [
        ("row 2", "db_id"), ("row 3", "query"), ("row 4", "db_id"), ("row 5", "db_id")]
    reasons = examples.skip_reasons()
    assert any("database 'nowhere' not found" in r and n == 2 for r, n in reasons.items())
    assert "4 rows skipped" in examples.summary()
    write_json(spider_root / "dev.json", rows[1:5])
    with pytest.raises(ValueError, match=r"no usable examples; 4 rows skipped: db_id: database 'nowhere'"):
        load_sql_examples(spider_root, on_bad_row="skip")


def test_loading_leaves_databases_unchanged(spider_root):
    db = spider_root / "database" / "concerts" / "concerts.sqlite"
    before = _file_hash(db)
    load_sql_examples(spider_root, split="train", sample_rows=3)
    assert _file_hash(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["concerts.sqlite"]  # no journal or WAL left behind


def test_a_wal_mode_database_gets_no_files_beside_it(tmp_path):
    import sqlite3

    from apmpo.data.sql import database_schema

    db = tmp_path / "w.sqlite"
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE t (a INTEGER)")
    connection.execute("INSERT INTO t VALUES (7)")
    connection.commit()
    connection.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.sqlite"]
    before = _file_hash(db)
    assert "a\n7\n" in database_schema(db, sample_rows=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.sqlite"] and _file_hash(db) == before

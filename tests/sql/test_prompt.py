"""Schema text and prompts: CREATE statements, sample rows, evidence, chat templates."""

import sqlite3

import pytest

from apmpo.data.prompts import render_prompt
from apmpo.data.sql import (
    SQLBENCH_ROOT,
    build_sql_prompt,
    database_schema,
    load_sql_examples,
)

from .conftest import make_db


def test_schema_has_every_table_in_creation_order(tmp_path):
    db = make_db(
        tmp_path / "c.sqlite",
        "CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT);"  # creates sqlite_sequence
        "INSERT INTO log (note) VALUES ('x');"
        "CREATE INDEX singer_country ON singer(country);"
        "CREATE VIEW chileans AS SELECT name FROM singer WHERE country = 'Chile';",
    )
    schema = database_schema(db)
    positions = [schema.index(f"CREATE {kind} {name}") for kind, name in
                 (("TABLE", "singer"), ("TABLE", "concert"), ("TABLE", "log"), ("VIEW", "chileans"))]
    assert positions == sorted(positions)
    assert "sqlite_sequence" not in schema and "CREATE INDEX" not in schema
    assert "example row" not in schema
    assert schema.count(";") >= 4


def test_sample_rows(tmp_path):
    db = make_db(
        tmp_path / "c.sqlite",
        'CREATE TABLE "odd ""name""" (k INTEGER, v TEXT, b BLOB);'
        "INSERT INTO \"odd \"\"name\"\"\" VALUES (1, 'line one\nline two', x'00010203'), (2, NULL, NULL),"
        "(3, '" + "y" * 500 + "', NULL);",
    )
    schema = database_schema(db, sample_rows=2)
    assert "/* 2 example rows from table singer:\nsinger_id | name | country | age\n1 | Ana | Chile | 31\n" \
           "2 | Bo | Norway | 45\n*/" in schema
    assert "3 | Cy" not in schema
    odd = database_schema(db, sample_rows=3, max_value_chars=20)
    assert 'example rows from table odd "name":' in odd
    assert "1 | line one line two | <blob 4 bytes>" in odd
    assert "2 | NULL | NULL" in odd
    assert "3 | " + "y" * 17 + "... | NULL" in odd
    one = database_schema(db, sample_rows=1)
    assert "/* 1 example row from table singer:" in one


def test_schema_errors(tmp_path):
    with pytest.raises(ValueError, match=r"sample_rows must be an integer in \[0, 20\]"):
        database_schema(SQLBENCH_ROOT / "database" / "shop" / "shop.sqlite", sample_rows=21)
    with pytest.raises(ValueError, match="max_value_chars must be an integer >= 8"):
        database_schema(SQLBENCH_ROOT / "database" / "shop" / "shop.sqlite", max_value_chars=2)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.execute("DROP TABLE t").connection.commit()
    with pytest.raises(ValueError, match="the database has no tables"):
        database_schema(empty)


def test_schema_time_limit(tmp_path):
    db = make_db(tmp_path / "c.sqlite", "CREATE TABLE big (x INTEGER);"
                 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
                 "INSERT INTO big SELECT i FROM n;")
    with pytest.raises(ValueError, match="reading the schema took longer than 0.0 s"):
        database_schema(db, sample_rows=3, time_limit_s=0.0)


def test_build_sql_prompt():
    prompt = build_sql_prompt("How many?", "CREATE TABLE t (x);", evidence="x is a count", instruction="Answer.")
    assert prompt == ("Database schema (SQLite):\n\nCREATE TABLE t (x);\n\nExternal knowledge: x is a count\n\n"
                      "Question: How many?\n\nAnswer.")
    assert "External knowledge" not in build_sql_prompt("How many?", "CREATE TABLE t (x);", evidence="  ")
    with pytest.raises(ValueError, match="question must be a non-empty string"):
        build_sql_prompt("", "CREATE TABLE t (x);")
    with pytest.raises(ValueError, match="schema must be a non-empty string"):
        build_sql_prompt("q?", " ")


def test_prompt_contains_the_schema_of_its_database():
    for example in load_sql_examples(SQLBENCH_ROOT, split="dev"):
        tables = [row[0] for row in sqlite3.connect(f"file:{example['db_path']}?mode=ro", uri=True).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            assert f"CREATE TABLE {table} (" in example["prompt"]
        assert example["schema"] in example["prompt"]


def test_chat_template_rendering():
    from apmpo.models.tiny import tiny_tokenizer

    example = load_sql_examples(SQLBENCH_ROOT, split="dev", limit=1)[0]
    tokenizer = tiny_tokenizer()
    text = render_prompt(example, tokenizer, system_prompt="You write SQL.")
    assert text.startswith("<|system|>You write SQL.<|end|><|user|>Database schema (SQLite):")
    assert text.endswith(example["prompt"] + "<|end|><|assistant|>")
    plain = render_prompt(example, None)
    assert plain == example["prompt"]
    messages = render_prompt(example, tokenizer, return_messages=True)
    assert messages == [{"role": "user", "content": example["prompt"]}]
    custom = render_prompt(example, None, template="{schema}\n-- {question}\nSELECT")
    assert custom.startswith("CREATE TABLE") and custom.endswith(f"-- {example['question']}\nSELECT")


def test_compact_schema_style(tmp_path):
    db = make_db(tmp_path / "c.sqlite", "CREATE VIEW chileans AS SELECT name, age FROM singer WHERE country = 'Chile';")
    assert database_schema(db, style="compact") == (
        "singer(singer_id, name, country, age)\n"
        "concert(concert_id, singer_id -> singer.singer_id, venue, year)\n"
        "view chileans(name, age)"
    )
    with_rows = database_schema(db, style="compact", sample_rows=1)
    assert with_rows.startswith("singer(singer_id, name, country, age)\n/* 1 example row from table singer:")
    with pytest.raises(ValueError, match="style must be one of create, compact, got 'yaml'"):
        database_schema(db, style="yaml")


def test_loader_schema_style():
    compact = load_sql_examples(SQLBENCH_ROOT, split="dev", limit=1, schema_style="compact")[0]
    full = load_sql_examples(SQLBENCH_ROOT, split="dev", limit=1)[0]
    assert "CREATE TABLE" not in compact["prompt"] and compact["schema"] in compact["prompt"]
    assert len(compact["schema"]) < len(full["schema"]) / 2
    with pytest.raises(ValueError, match="schema_style must be one of create, compact"):
        load_sql_examples(SQLBENCH_ROOT, schema_style="short")

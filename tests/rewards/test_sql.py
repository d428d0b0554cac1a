"""sql_execution: execution accuracy, comparison modes, and hostile SQL against a real file."""

import os
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apmpo.rewards import extract_sql, sql_execution
from apmpo.rewards._worker_sql import compare_results, has_order_by

from .conftest import sha256

GOLD = "SELECT name FROM items WHERE shop = 2 AND price > 20"


def score(completions, gold=GOLD, db=None, **options):
    return sql_execution.score_items(
        completions, gold_sql=[gold] * len(completions), db_path=[db] * len(completions), **options
    )


def test_correct_and_wrong_queries(shop_db):
    completions = [
        "```sql\nSELECT name FROM items WHERE price > 20 AND shop = 2;\n```",
        "SELECT i.name FROM items AS i JOIN shops s ON s.id = i.shop WHERE s.city = 'Lima' AND i.price > 20",
        "Here you go:\n```\nSELECT name FROM items WHERE shop = 2 AND price > 21\n```",
        "SELECT name, price FROM items WHERE shop = 2 AND price > 20",
        "SELECT nme FROM items",
        "no sql here at all",
    ]
    results = score(completions, db=shop_db)
    assert [r.score for r in results] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert "results match" in results[0].reason
    assert results[0].answer == "SELECT name FROM items WHERE price > 20 AND shop = 2"
    assert "no such column" in results[4].reason


def test_order_matters_only_when_gold_orders(shop_db):
    ordered_gold = "SELECT id FROM items WHERE shop = 1 ORDER BY price DESC, id"
    asc = "SELECT id FROM items WHERE shop = 1 ORDER BY price ASC, id"
    same_order = "SELECT id FROM items WHERE shop = 1 ORDER BY price DESC, id"
    assert [r.score for r in score([asc, same_order], gold=ordered_gold, db=shop_db)] == [0.0, 1.0]
    unordered_gold = "SELECT id FROM items WHERE shop = 1"
    assert [r.score for r in score([asc], gold=unordered_gold, db=shop_db)] == [1.0]
    assert [r.score for r in score([asc], gold=ordered_gold, db=shop_db, comparison="unordered")] == [1.0]
    assert [r.score for r in score([same_order], gold=unordered_gold, db=shop_db, comparison="ordered")] == [0.0]


def test_multiset_versus_set(shop_db):
    gold = "SELECT shop FROM items"  # 200 rows, 3 distinct values
    distinct = "SELECT DISTINCT shop FROM items"
    assert [r.score for r in score([distinct], gold=gold, db=shop_db)] == [0.0]
    assert [r.score for r in score([distinct], gold=gold, db=shop_db, comparison="set")] == [1.0]


def test_gold_errors_and_missing_values(shop_db, tmp_path):
    broken = "SELECT nope FROM items"
    assert score(["SELECT 1"], gold=broken, db=shop_db)[0].score == 0.0
    assert "gold SQL failed" in score(["SELECT 1"], gold=broken, db=shop_db)[0].reason
    assert score(["SELECT 1"], gold=broken, db=shop_db, on_gold_error="none")[0].score is None
    with pytest.raises(RuntimeError, match=r"gold_sql\[0\].*failed"):
        score(["SELECT 1"], gold=broken, db=shop_db, on_gold_error="raise")
    result = sql_execution.score_items(["SELECT 1"], gold_sql=[None], db_path=[shop_db])[0]
    assert result.score is None and "no gold SQL" in result.reason
    with pytest.raises(FileNotFoundError, match=r"db_path\[1\].*does not exist"):
        sql_execution(["SELECT 1", "SELECT 1"], gold_sql=["SELECT 1"] * 2, db_path=[shop_db, tmp_path / "missing.db"])
    with pytest.raises(TypeError, match=r"gold_sql\[0\] must be a string"):
        sql_execution(["SELECT 1"], gold_sql=[1], db_path=[shop_db])
    with pytest.raises(ValueError, match="comparison: expected one of"):
        sql_execution.configure(comparison="bag")


def hostile_queries(directory):
    return {
        "drop": "DROP TABLE items",
        "delete": "DELETE FROM items",
        "update": "UPDATE items SET price = 0",
        "insert": "INSERT INTO shops VALUES (9, 'Rome')",
        "create": "CREATE TABLE x (a)",
        "temp table": "CREATE TEMP TABLE x AS SELECT 1",
        "alter": "ALTER TABLE items ADD COLUMN y",
        "attach": f"ATTACH DATABASE '{directory / 'attached.db'}' AS other",
        "writable_schema": "PRAGMA writable_schema=1",
        "journal pragma": "PRAGMA journal_mode=WAL",
        "recursive forever": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
        "cartesian count": "SELECT count(*) FROM items a, items b, items c, items d, items e",
        "cartesian rows": "SELECT * FROM items a, items b, items c",
        "two statements": "SELECT 1; DROP TABLE items",
        "two selects": "SELECT 1; SELECT 2",
        "load_extension": "SELECT load_extension('/tmp/libevil.so')",
        "huge blob": "SELECT zeroblob(2000000000)",
        "huge string": "SELECT printf('%.*c', 2000000000, 'x')",
        "vacuum into": f"VACUUM INTO '{directory / 'copy.db'}'",
        "vacuum": "VACUUM",
        "reindex": "REINDEX items_by_name",
        "analyze": "ANALYZE",
        "transaction": "BEGIN IMMEDIATE",
        "savepoint": "SAVEPOINT s",
        "virtual table": "CREATE VIRTUAL TABLE v USING fts5(x)",
        "trigger": "CREATE TRIGGER t AFTER INSERT ON items BEGIN DELETE FROM items; END",
        "huge query": "SELECT " + "+".join(["1"] * 30_000),
    }


def test_hostile_sql_scores_zero_and_leaves_the_file_unchanged(shop_db, tmp_path):
    directory = shop_db.parent
    before = sha256(shop_db)
    files_before = sorted(os.listdir(directory))
    queries = hostile_queries(directory)
    start = time.perf_counter()
    results = score(list(queries.values()), db=shop_db, query_timeout_s=1.0, hard_timeout_s=3.0, max_rows=1000)
    elapsed = time.perf_counter() - start
    by_name = dict(zip(queries, results))
    for name, result in by_name.items():
        assert result.score == 0.0, (name, result.reason)
    assert "timed out" in by_name["recursive forever"].reason
    assert "timed out" in by_name["cartesian count"].reason
    assert "result too large" in by_name["cartesian rows"].reason
    assert "one statement" in by_name["two statements"].reason
    assert "not authorized" in by_name["attach"].reason
    assert "too long" in by_name["huge query"].reason
    # printf's huge precision runs inside one VM step, out of the progress handler's reach:
    # the hard per-item limit (3 s) kills its worker
    assert "timed out after 3 s (worker killed)" in by_name["huge string"].reason
    # three slow items (1 s, 1 s, 3 s) on two workers; the rest take milliseconds
    assert elapsed < 20, elapsed
    assert sha256(shop_db) == before
    assert sorted(os.listdir(directory)) == files_before
    connection = sqlite3.connect(shop_db)
    assert connection.execute("SELECT count(*) FROM items").fetchone() == (200,)
    connection.close()


def test_hard_timeout_kills_a_stuck_item(shop_db):
    # the progress handler stops the query at 5 s, but the item's hard limit (1 s) comes first
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    start = time.perf_counter()
    result = score([forever], db=shop_db, query_timeout_s=5.0, hard_timeout_s=1.0)[0]
    assert time.perf_counter() - start < 8
    assert result.score == 0.0 and "timed out after 1 s (worker killed)" in result.reason
    assert score([GOLD], db=shop_db)[0].score == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("```sql\nSELECT 1;\n```", "SELECT 1"),
        ("```SQL\nSELECT 1\n``` then ```sql\nSELECT 2\n```", "SELECT 2"),
        ("```sqlite\nSELECT 3\n```", "SELECT 3"),
        ("```\nSELECT 4\n```", "SELECT 4"),
        ("```python\nx\n``` and ```sql\nSELECT 5\n``` and ```\nnote\n```", "SELECT 5"),
        ("```sql\nSELECT 6 FROM t", "SELECT 6 FROM t"),  # cut off before the closing fence
        ("  SELECT 7 ;  ", "SELECT 7"),
        ("", ""),
    ],
)
def test_extract_sql(text, expected):
    assert extract_sql(text) == expected


def test_has_order_by():
    assert has_order_by("SELECT a FROM t ORDER  BY a")
    assert has_order_by("select a from t order\nby a")
    assert not has_order_by("SELECT 'order by' FROM t")
    assert not has_order_by("SELECT a FROM t -- order by a")
    assert not has_order_by("SELECT border, bye FROM t")


rows = st.lists(st.tuples(st.integers(-3, 3), st.sampled_from(["a", "b", None])), max_size=12)


@given(rows, st.randoms())
@settings(max_examples=200, deadline=None)
def test_comparisons(gold, rng):
    shuffled = list(gold)
    rng.shuffle(shuffled)
    assert compare_results(gold, shuffled, "unordered")
    assert compare_results(gold, shuffled, "set")
    assert compare_results(gold, shuffled, "ordered") == (shuffled == gold)
    doubled = gold + gold[:1]
    if gold:
        assert not compare_results(gold, doubled, "unordered")
        assert compare_results(gold, doubled, "set")


def test_wal_mode_databases_are_read_without_side_files(tmp_path):
    path = tmp_path / "wal.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (a INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    connection.commit()
    connection.close()  # the last connection checkpoints and removes the -wal file
    before = sha256(path)
    results = score(["SELECT a FROM t WHERE a > 1", "DELETE FROM t"], gold="SELECT a FROM t WHERE a >= 2", db=path)
    assert [r.score for r in results] == [1.0, 0.0], [r.reason for r in results]
    assert sorted(os.listdir(tmp_path)) == ["wal.db"] and sha256(path) == before
    # pending changes in a -wal file would be invisible to an immutable reader: refuse
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO t VALUES (4)")
    writer.commit()
    with pytest.raises(ValueError, match=r"db_path\[0\].*WAL mode with changes still in"):
        sql_execution(["SELECT 1"], gold_sql=["SELECT 1"], db_path=[path])
    writer.close()


def test_non_sqlite_files_raise(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database")
    with pytest.raises(ValueError, match=r"db_path\[0\].*not an SQLite 3 database file"):
        sql_execution(["SELECT 1"], gold_sql=["SELECT 1"], db_path=[path])

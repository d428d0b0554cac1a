"""The shipped benchmark: reproducible from its generator, gold results verified."""

import json
import sqlite3
from collections import Counter

import pytest

from apmpo.data.sql import SQLBENCH_ROOT
from apmpo.data.sqlbench import generate as gen


def _rows():
    return [row for name in ("train_spider.json", "dev.json") for row in json.loads((SQLBENCH_ROOT / name).read_text())]


def test_generator_reproduces_the_shipped_files(tmp_path):
    report = gen.generate(tmp_path, seed=0)
    assert gen.compare_outputs(SQLBENCH_ROOT, tmp_path) == []
    assert report.train + report.dev == len(_rows())
    assert sum(report.kept.values()) == len(_rows())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["database", "dev.json", "tables.json", "train_spider.json"]


def test_other_seed_gives_other_data_and_check_reports_it(tmp_path, capsys):
    gen.generate(tmp_path, seed=1)
    problems = gen.compare_outputs(SQLBENCH_ROOT, tmp_path)
    assert any("train_spider.json: differs" in p for p in problems)
    assert any("shop.sqlite: content differs" in p for p in problems)
    assert gen.main(["--check", "--out", str(tmp_path), "--seed", "1"]) == 0
    assert gen.main(["--check", "--out", str(tmp_path), "--seed", "0"]) == 1
    assert "out of date" in capsys.readouterr().out


def test_stored_gold_results_match_execution():
    connections = {}
    try:
        for row in _rows():
            db = SQLBENCH_ROOT / "database" / row["db_id"] / f"{row['db_id']}.sqlite"
            if row["db_id"] not in connections:
                connections[row["db_id"]] = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
            result = [list(r) for r in connections[row["db_id"]].execute(row["query"]).fetchall()]
            if "ORDER BY" in row["query"]:
                assert result == row["gold_result"], row["question"]
            else:
                assert Counter(map(tuple, result)) == Counter(map(tuple, row["gold_result"])), row["question"]
            assert 1 <= len(result) <= gen.MAX_RESULT_ROWS
    finally:
        for connection in connections.values():
            connection.close()


def test_tables_json_is_spider_shaped():
    tables = json.loads((SQLBENCH_ROOT / "tables.json").read_text())
    assert [t["db_id"] for t in tables] == list(gen.DATABASES)
    for entry in tables:
        assert len(entry["column_names_original"]) == len(entry["column_types"]) == len(entry["column_names"])
        assert entry["column_names_original"][0] == [-1, "*"]
        for child, parent in entry["foreign_keys"]:
            assert entry["column_names_original"][child][1] == entry["column_names_original"][parent][1]


class TestVerifier:
    """Each rejection rule of the generator on a tiny database."""

    @pytest.fixture
    def connection(self):
        connection = sqlite3.connect(":memory:")
        connection.executescript(
            "CREATE TABLE t (name TEXT, score INTEGER, grp TEXT);"
            "INSERT INTO t VALUES ('a', 3, 'x'), ('b', 5, 'x'), ('c', 5, 'y'), ('d', 9, 'y'), ('e', NULL, 'z');"
        )
        yield connection
        connection.close()

    def test_accepts_a_good_query(self, connection):
        rows = gen.verify(connection, gen.Query("name", "t", order_by=(("score", "DESC"),), limit=1))
        assert rows == [("d",)]

    @pytest.mark.parametrize(
        "query,reason",
        [
            (gen.Query("name", "t", where="score > 100"), "empty result"),
            (gen.Query("score", "t", where="grp = 'z'"), "only NULL values"),
            # the tied rows may also come out in another order when scanned in reverse
            (gen.Query("name", "t", order_by=(("score", "DESC"),), limit=2), "tie in the ordering keys|scan order"),
            # the same output either way: only the key check sees the tie
            (gen.Query("score", "t", where="score >= 3", order_by=(("score", "ASC"),)), "tie in the ordering keys"),
            (gen.Query("name", "t", where="name <> 'zz'"), "the WHERE condition keeps every row"),
            (gen.Query("grp", "t", group_by="grp", having="COUNT(*) >= 1"), "the HAVING condition keeps every row"),
        ],
    )
    def test_rejects(self, connection, query, reason):
        with pytest.raises(gen.Rejected, match=reason):
            gen.verify(connection, query)

    def test_rejects_scan_order_dependence(self, connection):
        # a LIMIT without ORDER BY hidden in a subquery: which rows it keeps depends on the scan order
        query = gen.Query("name", "t", where="name IN (SELECT name FROM t LIMIT 2)")
        with pytest.raises(gen.Rejected, match="result depends on the scan order"):
            gen.verify(connection, query)

    def test_rejects_too_many_rows(self, connection):
        connection.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
                           "INSERT INTO t SELECT 'n' || i, i + 100, 'w' FROM n")
        with pytest.raises(gen.Rejected, match=r"rows \(> 40\)"):
            gen.verify(connection, gen.Query("name", "t", where="score > 4"))

    def test_query_shape_rules(self):
        with pytest.raises(ValueError, match="LIMIT without ORDER BY"):
            gen.Query("name", "t", limit=1)
        with pytest.raises(ValueError, match="DISTINCT with ORDER BY"):
            gen.Query("name", "t", distinct=True, order_by=(("name", "ASC"),))
        query = gen.Query("grp, COUNT(*)", "t", where="score > 1", group_by="grp", having="COUNT(*) > 1",
                          order_by=(("COUNT(*)", "DESC"), ("grp", "ASC")), limit=2)
        assert query.sql == ("SELECT grp, COUNT(*) FROM t WHERE score > 1 GROUP BY grp HAVING COUNT(*) > 1 "
                             "ORDER BY COUNT(*) DESC, grp ASC LIMIT 2")
        assert query.order_keys_sql() == ("SELECT COUNT(*), grp FROM t WHERE score > 1 GROUP BY grp "
                                          "HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC, grp ASC LIMIT 3")


def test_plural_and_literals():
    assert [gen.plural(w) for w in ("city", "status", "genre", "day")] == ["cities", "statuses", "genres", "days"]
    assert gen.lit("O'Hara") == "'O''Hara'" and gen.lit(12.0) == "12" and gen.lit(12.25) == "12.25"

"""Small Spider- and BIRD-layout folders built in the test's temporary directory."""

import json
import sqlite3
from pathlib import Path

import pytest


def make_db(path: Path, extra_sql: str = "") -> Path:
    """A two-table SQLite database (singers, concerts) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
        CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(singer_id),
                              venue TEXT, year INTEGER);
        INSERT INTO singer VALUES (1, 'Ana', 'Chile', 31), (2, 'Bo', 'Norway', 45), (3, 'Cy', 'Chile', 28);
        INSERT INTO concert VALUES (1, 1, 'Arena', 2019), (2, 1, 'Hall', 2021), (3, 2, 'Arena', 2021);
        """
        + extra_sql
    )
    connection.commit()
    connection.close()
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


SPIDER_ROWS = [
    {"db_id": "concerts", "question": "How many singers are there?", "query": "SELECT count(*) FROM singer",
     "query_toks": ["SELECT"], "sql": {"select": []}},
    {"db_id": "concerts", "question": "Which singers come from Chile?",
     "query": "SELECT name FROM singer WHERE country = 'Chile'"},
]
BIRD_ROWS = [
    {"question_id": 0, "db_id": "concerts", "question": "How many veteran singers are there?",
     "evidence": "veteran refers to age > 40", "SQL": "SELECT COUNT(*) FROM singer WHERE age > 40",
     "difficulty": "simple"},
    {"question_id": 1, "db_id": "concerts", "question": "Where did Ana sing in 2021?", "evidence": "",
     "SQL": "SELECT venue FROM concert JOIN singer USING (singer_id) WHERE name = 'Ana' AND year = 2021",
     "difficulty": "moderate"},
]


@pytest.fixture
def spider_root(tmp_path) -> Path:
    """root/{train_spider.json, dev.json, tables.json, database/concerts/concerts.sqlite}."""
    root = tmp_path / "spider"
    make_db(root / "database" / "concerts" / "concerts.sqlite")
    write_json(root / "train_spider.json", SPIDER_ROWS)
    write_json(root / "dev.json", SPIDER_ROWS[:1])
    write_json(root / "tables.json", [])
    return root


@pytest.fixture
def bird_root(tmp_path) -> Path:
    """root/dev/{dev.json, dev_databases/concerts/concerts.sqlite} and root/train/... ."""
    root = tmp_path / "bird"
    for split in ("train", "dev"):
        make_db(root / split / f"{split}_databases" / "concerts" / "concerts.sqlite")
        write_json(root / split / f"{split}.json", BIRD_ROWS)
    return root

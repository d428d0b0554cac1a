import hashlib
import sqlite3

import pytest


def sha256(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory):
    """A small SQLite database: items(id, name, price, shop) with 200 rows and an index, shops(id, city)."""
    path = tmp_path_factory.mktemp("sql") / "shop.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE shops (id INTEGER PRIMARY KEY, city TEXT)")
    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, shop INTEGER)")
    connection.executemany("INSERT INTO shops VALUES (?, ?)", [(1, "Oslo"), (2, "Lima"), (3, "Pune")])
    connection.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?)",
        [(i, f"item{i % 17}", round(1.5 * (i % 23), 2), 1 + i % 3) for i in range(200)],
    )
    connection.execute("CREATE INDEX items_by_name ON items(name)")
    connection.commit()
    connection.close()
    return path

"""Generate sqlbench: a small self-made text-to-SQL benchmark in Spider's layout.

BIRD and Spider cannot be downloaded in every environment (and never by the package at
run time), so apmpo ships this benchmark for its tests and its CPU demo. Running

    python -m apmpo.data.sqlbench.generate            # rewrite the shipped files
    python -m apmpo.data.sqlbench.generate --check    # exit 1 if they are out of date

writes, next to this file (or to ``--out``)::

    database/<db_id>/<db_id>.sqlite   three databases: shop, school, library
    train_spider.json, dev.json       question / gold SQL pairs (Spider's fields:
                                      db_id, question, query; plus template,
                                      category, difficulty, evidence, gold_result)
    tables.json                       Spider's schema description of each database

Everything is drawn from ``random.Random`` seeded with a string (same output on every
platform for the same ``--seed``). The databases are filled with generated rows
(unique names and titles; prices that are multiples of 0.25, so sums and averages are
exact in binary floating point). Questions come from templates (select, filter,
aggregate, distinct, group by / having, order by / limit, joins, nested queries,
BIRD-style questions with evidence), each instantiated with values read from the
data. Every gold query is executed at generation time and kept only if its result

- is non-empty and not only NULLs, with at most ``MAX_RESULT_ROWS`` rows;
- is the same when SQLite scans tables in reverse (``PRAGMA
  reverse_unordered_selects``): as a multiset, and as a list when the query orders;
- has no tie in its ordering keys where the order decides the answer (``ORDER BY``
  with ``LIMIT k``: the first k+1 keys differ; ``ORDER BY`` without limit: all keys
  differ), so "the most expensive product" has one answer;
- changes when its ``WHERE`` or ``HAVING`` condition is dropped (a filter that keeps
  every row tests nothing).

The verified result is stored with each question (``gold_result``). Questions are
distinct, and so are gold queries within a database. Within each (database, template)
group about one in five questions goes to dev, the rest to train, so both splits cover
every database and template (unlike Spider, whose dev databases are unseen in
training: this benchmark tests the training loop on CPU, not cross-database
generalisation). Files are written atomically (:mod:`apmpo.io`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import random
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apmpo.io import atomic_write, atomic_write_text

__all__ = [
    "DATABASES",
    "MAX_RESULT_ROWS",
    "QUESTIONS_PER_DATABASE",
    "DEV_EVERY",
    "Query",
    "Candidate",
    "build_database",
    "candidates",
    "verify",
    "generate",
    "database_dump",
    "main",
]

DATABASES = ("shop", "school", "library")
MAX_RESULT_ROWS = 40
"""Gold queries returning more rows than this are dropped."""
QUESTIONS_PER_DATABASE = 120
"""Questions kept per database (before the train/dev split)."""
DEV_EVERY = 5
"""About one question in DEV_EVERY of each (database, template) group goes to dev."""
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    """A SELECT built from its clauses, so the verifier can derive its ordering keys."""

    select: str
    source: str
    """The FROM clause body: a table or joins."""
    where: str = ""
    group_by: str = ""
    having: str = ""
    order_by: tuple[tuple[str, str], ...] = ()
    """(expression, "ASC" or "DESC") pairs."""
    limit: int | None = None
    distinct: bool = False

    def __post_init__(self):
        if self.distinct and self.order_by:
            raise ValueError("DISTINCT with ORDER BY is not used by the templates (keys would be ambiguous)")
        if self.limit is not None and not self.order_by:
            raise ValueError("LIMIT without ORDER BY has no deterministic result")

    def _tail(self, *, with_limit: int | None) -> str:
        parts = [f"FROM {self.source}"]
        if self.where:
            parts.append(f"WHERE {self.where}")
        if self.group_by:
            parts.append(f"GROUP BY {self.group_by}")
        if self.having:
            parts.append(f"HAVING {self.having}")
        if self.order_by:
            parts.append("ORDER BY " + ", ".join(f"{expr} {direction}" for expr, direction in self.order_by))
        if with_limit is not None:
            parts.append(f"LIMIT {with_limit}")
        return " ".join(parts)

    @property
    def sql(self) -> str:
        """The gold SQL text."""
        return f"SELECT {'DISTINCT ' if self.distinct else ''}{self.select} {self._tail(with_limit=self.limit)}"

    def order_keys_sql(self) -> str | None:
        """The ordering keys of the rows that decide the answer, plus the next one (None: unordered)."""
        if not self.order_by:
            return None
        keys = ", ".join(expr for expr, _ in self.order_by)
        limit = self.limit + 1 if self.limit is not None else MAX_RESULT_ROWS + 1
        return f"SELECT {keys} {self._tail(with_limit=limit)}"


@dataclass(frozen=True)
class Candidate:
    """One question with its gold query, before verification."""

    db_id: str
    template: str
    category: str
    """select, filter, aggregate, group, order, join, nested."""
    difficulty: str
    """easy, medium, hard (our judgement, in the spirit of Spider's levels)."""
    question: str
    query: Query
    evidence: str = ""
    """BIRD-style external knowledge needed to answer."""


def lit(value: Any) -> str:
    """An SQL literal for a value drawn from the data."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return num(value)


def num(value: Any) -> str:
    """A number as written in questions and SQL: 12, 12.5."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------- databases

FIRST_NAMES = (
    "Ada",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaito",
    "Lena",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Samir",
    "Tove",
    "Umar",
    "Vera",
    "Wilhelm",
    "Ximena",
    "Yusuf",
    "Zofia",
    "Amara",
    "Bilal",
    "Carmen",
    "Diego",
)
LAST_NAMES = (
    "Almeida",
    "Berg",
    "Costa",
    "Dahl",
    "Eriksen",
    "Ferreira",
    "Gallo",
    "Haas",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lund",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Silva",
    "Tanaka",
    "Urban",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zeller",
)


def _names(rng: random.Random, n: int) -> list[str]:
    pool = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    return rng.sample(pool, n)


def _date(rng: random.Random, year: int) -> str:
    day = datetime.date(year, 1, 1) + datetime.timedelta(days=rng.randrange(365))
    return day.isoformat()


def _distinct_prices(rng: random.Random, low: float, high: float, n: int, taken: set[float]) -> list[float]:
    prices: list[float] = []
    while len(prices) < n:
        price = rng.randint(int(low * 4), int(high * 4)) / 4  # multiples of 0.25: exact in binary
        if price not in taken:
            taken.add(price)
            prices.append(price)
    return prices


SCHEMAS: dict[str, str] = {
    "shop": """
CREATE TABLE customers (
  customer_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  signup_year INTEGER NOT NULL
);
CREATE TABLE products (
  product_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  category TEXT NOT NULL,
  price REAL NOT NULL,
  stock INTEGER NOT NULL
);
CREATE TABLE orders (
  order_id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  order_date TEXT NOT NULL,
  status TEXT NOT NULL
);
CREATE TABLE order_items (
  order_id INTEGER NOT NULL REFERENCES orders(order_id),
  product_id INTEGER NOT NULL REFERENCES products(product_id),
  quantity INTEGER NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
""",
    "school": """
CREATE TABLE teachers (
  teacher_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  department TEXT NOT NULL,
  hire_year INTEGER NOT NULL
);
CREATE TABLE courses (
  course_id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  department TEXT NOT NULL,
  credits INTEGER NOT NULL,
  teacher_id INTEGER NOT NULL REFERENCES teachers(teacher_id)
);
CREATE TABLE students (
  student_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  major TEXT NOT NULL,
  study_year INTEGER NOT NULL
);
CREATE TABLE enrollments (
  student_id INTEGER NOT NULL REFERENCES students(student_id),
  course_id INTEGER NOT NULL REFERENCES courses(course_id),
  grade INTEGER NOT NULL,
  PRIMARY KEY (student_id, course_id)
);
""",
    "library": """
CREATE TABLE authors (
  author_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  country TEXT NOT NULL,
  birth_year INTEGER NOT NULL
);
CREATE TABLE books (
  book_id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  author_id INTEGER NOT NULL REFERENCES authors(author_id),
  genre TEXT NOT NULL,
  published_year INTEGER NOT NULL,
  pages INTEGER NOT NULL
);
CREATE TABLE members (
  member_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  joined_year INTEGER NOT NULL
);
CREATE TABLE loans (
  loan_id INTEGER PRIMARY KEY,
  book_id INTEGER NOT NULL REFERENCES books(book_id),
  member_id INTEGER NOT NULL REFERENCES members(member_id),
  loan_date TEXT NOT NULL,
  returned INTEGER NOT NULL
);
""",
}


def _rows_shop(rng: random.Random) -> dict[str, list[tuple]]:
    cities = ("Lisbon", "Oslo", "Porto", "Vienna", "Dublin", "Krakow")
    customers = [
        (i, name, rng.choice(cities), rng.randint(2015, 2023)) for i, name in enumerate(_names(rng, 30), start=1)
    ]
    nouns = {
        "books": ("Atlas", "Cookbook", "Novel", "Travel Guide", "Dictionary"),
        "garden": ("Rake", "Watering Can", "Plant Pot", "Hose", "Shovel"),
        "kitchen": ("Kettle", "Frying Pan", "Teapot", "Cutting Board", "Blender"),
        "toys": ("Puzzle", "Kite", "Yo-yo", "Board Game", "Robot"),
        "electronics": ("Headphones", "Keyboard", "Webcam", "Speaker", "Charger"),
    }
    price_range = {"books": (6, 45), "garden": (4, 60), "kitchen": (8, 90), "toys": (3, 50), "electronics": (15, 180)}
    adjectives = ("Classic", "Deluxe", "Compact", "Bright", "Silver", "Rustic", "Mini", "Pro")
    products: list[tuple] = []
    taken: set[float] = set()
    for category in sorted(nouns):
        picks = rng.sample([f"{a} {n}" for a in adjectives for n in nouns[category]], 5)
        prices = _distinct_prices(rng, *price_range[category], 5, taken)
        for name, price in zip(picks, prices):
            products.append((len(products) + 1, name, category, price, rng.randint(0, 60)))
    buyers = rng.sample(range(1, len(customers) + 1), 25)  # five customers never order
    statuses = ("delivered", "delivered", "delivered", "shipped", "shipped", "pending", "cancelled")
    orders = [(i, rng.choice(buyers), _date(rng, 2023), rng.choice(statuses)) for i in range(1, 91)]
    orders.sort(key=lambda row: (row[2], row[0]))
    orders = [(i, c, d, s) for i, (_, c, d, s) in enumerate(orders, start=1)]
    items = []
    for order_id, *_ in orders:
        for product_id in sorted(rng.sample(range(1, len(products) + 1), rng.randint(1, 3))):
            items.append((order_id, product_id, rng.randint(1, 5)))
    return {"customers": customers, "products": products, "orders": orders, "order_items": items}


def _rows_school(rng: random.Random) -> dict[str, list[tuple]]:
    titles = {
        "Mathematics": ("Linear Algebra", "Calculus", "Statistics", "Number Theory"),
        "Physics": ("Mechanics", "Optics", "Thermodynamics", "Quantum Physics"),
        "History": ("Ancient Rome", "Medieval Europe", "Modern History", "History of Science"),
        "Biology": ("Genetics", "Ecology", "Cell Biology", "Botany"),
        "Literature": ("Poetry", "The Novel", "Drama", "World Literature"),
    }
    departments = sorted(titles)
    teacher_departments = departments + [rng.choice(departments) for _ in range(7)]
    teachers = [
        (i, name, department, rng.randint(2000, 2022))
        for i, (name, department) in enumerate(zip(_names(rng, 12), teacher_departments), start=1)
    ]
    courses: list[tuple] = []
    for department in departments:
        staff = [t[0] for t in teachers if t[2] == department]
        for title in titles[department]:
            courses.append((len(courses) + 1, title, department, rng.choice((2, 3, 4, 5, 6)), rng.choice(staff)))
    students = [
        (i, name, rng.choice(departments), rng.randint(1, 4)) for i, name in enumerate(_names(rng, 40), start=1)
    ]
    enrollments = []
    for student_id, *_ in students:
        for course_id in sorted(rng.sample(range(1, len(courses) + 1), rng.randint(2, 5))):
            enrollments.append((student_id, course_id, rng.randint(35, 100)))
    return {"teachers": teachers, "courses": courses, "students": students, "enrollments": enrollments}


def _rows_library(rng: random.Random) -> dict[str, list[tuple]]:
    countries = ("Chile", "Japan", "Kenya", "Norway", "Canada", "India")
    authors = [
        (i, name, rng.choice(countries), rng.randint(1920, 1990)) for i, name in enumerate(_names(rng, 15), start=1)
    ]
    adjectives = ("Silent", "Hidden", "Last", "Burning", "Frozen", "Golden", "Broken", "Distant")
    nouns = ("River", "Garden", "Letter", "Mountain", "Harbour", "Archive", "Orchard", "Lantern")
    titles = rng.sample([f"The {a} {n}" for a in adjectives for n in nouns], 40)
    genres = ("mystery", "fantasy", "history", "poetry", "science")
    writers = rng.sample(range(1, len(authors) + 1), len(authors)) + [
        rng.randint(1, len(authors)) for _ in range(len(titles) - len(authors))
    ]  # every author has at least one book
    books = [
        (i, title, writer, rng.choice(genres), rng.randint(1950, 2023), rng.randint(80, 900))
        for i, (title, writer) in enumerate(zip(titles, writers), start=1)
    ]
    members = [
        (i, name, rng.choice(("Oslo", "Nairobi", "Osaka", "Toronto", "Pune")), rng.randint(2010, 2024))
        for i, name in enumerate(_names(rng, 25), start=1)
    ]
    borrowers = rng.sample(range(1, len(members) + 1), 20)  # five members never borrow
    loans = sorted(
        (_date(rng, 2024), rng.randint(1, len(books)), rng.choice(borrowers), int(rng.random() < 0.75))
        for _ in range(100)
    )
    numbered = [(i, book, member, day, returned) for i, (day, book, member, returned) in enumerate(loans, start=1)]
    return {"authors": authors, "books": books, "members": members, "loans": numbered}


_ROWS: dict[str, Callable[[random.Random], dict[str, list[tuple]]]] = {
    "shop": _rows_shop,
    "school": _rows_school,
    "library": _rows_library,
}


def build_database(db_id: str, path: Path, seed: int) -> None:
    """Create database ``db_id`` at ``path`` (written to a temporary file, then moved)."""
    rows = _ROWS[db_id](random.Random(f"sqlbench|{seed}|{db_id}|rows"))

    def write(temporary: str) -> None:
        connection = sqlite3.connect(temporary)
        try:
            connection.executescript(SCHEMAS[db_id])
            for table, table_rows in rows.items():
                marks = ", ".join("?" * len(table_rows[0]))
                connection.executemany(f"INSERT INTO {table} VALUES ({marks})", table_rows)
            connection.commit()
            problems = connection.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise AssertionError(f"{db_id}: foreign key violations {problems[:3]}")
            connection.execute("VACUUM")
        finally:
            connection.close()

    atomic_write(path, write)


def database_dump(path: str | os.PathLike) -> list[str]:
    """The SQL text dump of a database (compares content across SQLite versions)."""
    connection = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


# ---------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Entity:
    """A table seen by the generic templates."""

    table: str
    key: str
    singular: str
    plural: str
    label: str
    """The column naming a row (unique)."""
    label_word: str
    categories: tuple[tuple[str, str, str, str], ...] = ()
    """(column, noun, predicate for a plural subject, for a singular one), with {v} the value,
    e.g. ("city", "city", "live in {v}", "lives in {v}")."""
    numbers: tuple[tuple[str, str, str], ...] = ()
    """(column, noun, allowed aggregates among "avg max min sum")."""


@dataclass(frozen=True)
class Relation:
    """A foreign key child.fk -> parent.key, with how to say it."""

    child: Entity
    parent: Entity
    fk: str
    predicate: str
    """For a plural child subject, with {v} = a parent label, e.g. "were written by {v}"."""
    parent_question: str
    """Asks for the parent's label given a child's label {v}."""
    none_question: str
    """Asks for the parents without any child."""


_AGG_WORD = {"avg": "average", "max": "highest", "min": "lowest", "sum": "total"}


def plural(noun: str) -> str:
    """English plural of the category nouns used here (city -> cities, status -> statuses)."""
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _values(connection: sqlite3.Connection, table: str, column: str) -> list[Any]:
    return [row[0] for row in connection.execute(f"SELECT DISTINCT {column} FROM {table} ORDER BY {column}")]


def _pick(rng: random.Random, values: Sequence[Any], k: int) -> list[Any]:
    return rng.sample(list(values), min(k, len(values)))


def _thresholds(values: Sequence[Any]) -> list[Any]:
    ordered = sorted(values)
    return sorted({ordered[int(len(ordered) * q)] for q in (0.25, 0.5, 0.75)})


def entity_candidates(db_id: str, e: Entity, connection: sqlite3.Connection, rng: random.Random) -> Iterator[Candidate]:
    """The generic single-table templates for one entity."""

    def make(
        template: str, category: str, difficulty: str, question: str, query: Query, evidence: str = ""
    ) -> Candidate:
        return Candidate(db_id, template, category, difficulty, question, query, evidence)

    t, label, lw = e.table, e.label, e.label_word
    count = connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
    if count <= MAX_RESULT_ROWS:
        yield make("list_all", "select", "easy", f"List the {lw}s of all {e.plural}.", Query(label, t))
    yield make("count_all", "aggregate", "easy", f"How many {e.plural} are there?", Query("COUNT(*)", t))
    for column, noun, predicate, singular in e.categories:
        values = _values(connection, t, column)
        yield make(
            "distinct",
            "select",
            "easy",
            f"List the different {plural(noun)} of the {e.plural}.",
            Query(column, t, distinct=True),
        )
        yield make(
            "count_distinct",
            "aggregate",
            "easy",
            f"How many different {plural(noun)} do the {e.plural} have?",
            Query(f"COUNT(DISTINCT {column})", t),
        )
        yield make(
            "group_count",
            "group",
            "medium",
            f"For each {noun}, give the {noun} and the number of {e.plural} with it.",
            Query(f"{column}, COUNT(*)", t, group_by=column),
        )
        for v in _pick(rng, values, 3):
            condition = f"{column} = {lit(v)}"
            said = predicate.format(v=v)
            yield make(
                "filter_eq",
                "filter",
                "easy",
                f"What are the {lw}s of the {e.plural} that {said}?",
                Query(label, t, where=condition),
            )
            yield make(
                "count_filter",
                "aggregate",
                "easy",
                f"How many {e.plural} {said}?",
                Query("COUNT(*)", t, where=condition),
            )
        for k in (2, 4, 6):
            yield make(
                "having",
                "group",
                "medium",
                f"Which {plural(noun)} have more than {k} {e.plural}?",
                Query(column, t, group_by=column, having=f"COUNT(*) > {k}"),
            )
        yield make(
            "group_argmax",
            "order",
            "medium",
            f"Which {noun} has the most {e.plural}?",
            Query(column, t, group_by=column, order_by=(("COUNT(*)", "DESC"),), limit=1),
        )
        for number, number_noun, aggregates in e.numbers:
            yield make(
                "group_agg",
                "group",
                "medium",
                f"For each {noun}, give the {noun} and the highest {number_noun} of its {e.plural}.",
                Query(f"{column}, MAX({number})", t, group_by=column),
            )
            for v in _pick(rng, values, 2):
                said = predicate.format(v=v)
                yield make(
                    "sorted_filter",
                    "order",
                    "medium",
                    f"List the {lw}s of the {e.plural} that {said}, from the highest {number_noun} to the lowest.",
                    Query(label, t, where=f"{column} = {lit(v)}", order_by=((number, "DESC"),)),
                )
                yield make(
                    "two_columns",
                    "filter",
                    "easy",
                    f"Give the {lw} and the {number_noun} of every {e.singular} that {singular.format(v=v)}.",
                    Query(f"{label}, {number}", t, where=f"{column} = {lit(v)}"),
                )
                for agg in aggregates.split()[:2]:
                    yield make(
                        "agg_filter",
                        "aggregate",
                        "medium",
                        f"What is the {_AGG_WORD[agg]} {number_noun} of the {e.plural} that {said}?",
                        Query(f"{agg.upper()}({number})", t, where=f"{column} = {lit(v)}"),
                    )
    for number, number_noun, aggregates in e.numbers:
        values = _values(connection, t, number)
        for agg in aggregates.split():
            yield make(
                "agg",
                "aggregate",
                "easy",
                f"What is the {_AGG_WORD[agg]} {number_noun} of all {e.plural}?",
                Query(f"{agg.upper()}({number})", t),
            )
        for v in _thresholds(values):
            yield make(
                "filter_gt",
                "filter",
                "easy",
                f"What are the {lw}s of the {e.plural} with a {number_noun} greater than {num(v)}?",
                Query(label, t, where=f"{number} > {lit(v)}"),
            )
            yield make(
                "filter_lt",
                "filter",
                "easy",
                f"What are the {lw}s of the {e.plural} with a {number_noun} less than {num(v)}?",
                Query(label, t, where=f"{number} < {lit(v)}"),
            )
            yield make(
                "count_gt",
                "aggregate",
                "easy",
                f"How many {e.plural} have a {number_noun} of at least {num(v)}?",
                Query("COUNT(*)", t, where=f"{number} >= {lit(v)}"),
            )
        for column, _noun, predicate, _singular in e.categories:
            for v in _pick(rng, _values(connection, t, column), 2):
                for x in _thresholds(values)[1:2]:
                    yield make(
                        "filter_and",
                        "filter",
                        "medium",
                        f"What are the {lw}s of the {e.plural} that {predicate.format(v=v)} "
                        f"and have a {number_noun} greater than {num(x)}?",
                        Query(label, t, where=f"{column} = {lit(v)} AND {number} > {lit(x)}"),
                    )
        yield make(
            "argmax",
            "order",
            "easy",
            f"What is the {lw} of the {e.singular} with the highest {number_noun}?",
            Query(label, t, order_by=((number, "DESC"),), limit=1),
        )
        yield make(
            "argmin",
            "order",
            "easy",
            f"What is the {lw} of the {e.singular} with the lowest {number_noun}?",
            Query(label, t, order_by=((number, "ASC"),), limit=1),
        )
        for k in (3, 5):
            yield make(
                "top_k",
                "order",
                "medium",
                f"List the {lw}s of the {k} {e.plural} with the highest {number_noun}, highest first.",
                Query(label, t, order_by=((number, "DESC"),), limit=k),
            )
        yield make(
            "above_average",
            "nested",
            "hard",
            f"What are the {lw}s of the {e.plural} whose {number_noun} is above the average {number_noun} "
            f"of all {e.plural}?",
            Query(label, t, where=f"{number} > (SELECT AVG({number}) FROM {t})"),
        )
        yield make(
            "range",
            "aggregate",
            "easy",
            f"What are the highest and the lowest {number_noun} of the {e.plural}? Give the highest first.",
            Query(f"MAX({number}), MIN({number})", t),
        )


def relation_candidates(
    db_id: str, r: Relation, connection: sqlite3.Connection, rng: random.Random
) -> Iterator[Candidate]:
    """The generic join templates for one foreign key."""
    c, p = r.child, r.parent
    ca, pa = c.table[0], p.table[0]  # aliases: o(rders) / c(ustomers), b(ooks) / a(uthors), ...
    if ca == pa:
        raise ValueError(f"relation {c.table} -> {p.table}: the aliases {ca!r} would clash")
    join = f"{c.table} AS {ca} JOIN {p.table} AS {pa} ON {ca}.{r.fk} = {pa}.{p.key}"
    parents = _values(connection, p.table, p.label)
    children = _values(connection, c.table, c.label)

    def make(template: str, category: str, difficulty: str, question: str, query: Query) -> Candidate:
        return Candidate(db_id, template, category, difficulty, question, query)

    for v in _pick(rng, parents, 4):
        condition = f"{pa}.{p.label} = {lit(v)}"
        yield make(
            "join_filter",
            "join",
            "medium",
            f"What are the {c.label_word}s of the {c.plural} that {r.predicate.format(v=v)}?",
            Query(f"{ca}.{c.label}", join, where=condition),
        )
        yield make(
            "join_count",
            "join",
            "medium",
            f"How many {c.plural} {r.predicate.format(v=v)}?",
            Query("COUNT(*)", join, where=condition),
        )
        for number, number_noun, aggregates in c.numbers[:1]:
            agg = aggregates.split()[0]
            yield make(
                "join_agg",
                "join",
                "medium",
                f"What is the {_AGG_WORD[agg]} {number_noun} of the {c.plural} that {r.predicate.format(v=v)}?",
                Query(f"{agg.upper()}({ca}.{number})", join, where=condition),
            )
    for v in _pick(rng, children, 4):
        yield make(
            "join_parent",
            "join",
            "medium",
            r.parent_question.format(v=v),
            Query(f"{pa}.{p.label}", join, where=f"{ca}.{c.label} = {lit(v)}"),
        )
    yield make(
        "join_group",
        "join",
        "hard",
        f"For each {p.singular}, give the {p.label_word} and the number of {c.plural} that "
        f"{r.predicate.format(v='them')}, counting 0 for {p.plural} with none.",
        Query(
            f"{pa}.{p.label}, COUNT({ca}.{c.key})",
            f"{p.table} AS {pa} LEFT JOIN {c.table} AS {ca} ON {ca}.{r.fk} = {pa}.{p.key}",
            group_by=f"{pa}.{p.key}",
        ),
    )
    yield make(
        "join_argmax",
        "join",
        "hard",
        f"Which {p.singular} has the most {c.plural}? Give the {p.label_word}.",
        Query(f"{pa}.{p.label}", join, group_by=f"{pa}.{p.key}", order_by=(("COUNT(*)", "DESC"),), limit=1),
    )
    yield make(
        "not_in",
        "nested",
        "hard",
        r.none_question,
        Query(p.label, p.table, where=f"{p.key} NOT IN (SELECT {r.fk} FROM {c.table})"),
    )
    for column, _noun, predicate, _ in p.categories[:1]:
        for v in _pick(rng, _values(connection, p.table, column), 3):
            yield make(
                "join_parent_attr",
                "join",
                "medium",
                f"What are the {c.label_word}s of the {c.plural} that "
                f"{r.predicate.format(v=p.plural)} that {predicate.format(v=v)}?",
                Query(f"{ca}.{c.label}", join, where=f"{pa}.{column} = {lit(v)}"),
            )


# --- the three databases: entities, relations and their own templates (many-to-many links, evidence)

CUSTOMERS = Entity(
    "customers",
    "customer_id",
    "customer",
    "customers",
    "name",
    "name",
    categories=(("city", "city", "live in {v}", "lives in {v}"),),
    numbers=(("signup_year", "sign-up year", "min max"),),
)
PRODUCTS = Entity(
    "products",
    "product_id",
    "product",
    "products",
    "name",
    "name",
    categories=(("category", "category", "are in the {v} category", "is in the {v} category"),),
    numbers=(("price", "price", "avg max min"), ("stock", "stock", "sum avg max min")),
)
ORDERS = Entity(
    "orders",
    "order_id",
    "order",
    "orders",
    "order_id",
    "ID",
    categories=(("status", "status", "have the status '{v}'", "has the status '{v}'"),),
)
TEACHERS = Entity(
    "teachers",
    "teacher_id",
    "teacher",
    "teachers",
    "name",
    "name",
    categories=(("department", "department", "work in the {v} department", "works in the {v} department"),),
    numbers=(("hire_year", "hire year", "min max"),),
)
COURSES = Entity(
    "courses",
    "course_id",
    "course",
    "courses",
    "title",
    "title",
    categories=(("department", "department", "are offered by the {v} department", "is offered by the {v} department"),),
    numbers=(("credits", "number of credits", "sum avg max"),),
)
STUDENTS = Entity(
    "students",
    "student_id",
    "student",
    "students",
    "name",
    "name",
    categories=(("major", "major", "major in {v}", "majors in {v}"),),
    numbers=(("study_year", "year of study", "avg max"),),
)
AUTHORS = Entity(
    "authors",
    "author_id",
    "author",
    "authors",
    "name",
    "name",
    categories=(("country", "country", "come from {v}", "comes from {v}"),),
    numbers=(("birth_year", "birth year", "min max"),),
)
BOOKS = Entity(
    "books",
    "book_id",
    "book",
    "books",
    "title",
    "title",
    categories=(("genre", "genre", "belong to the {v} genre", "belongs to the {v} genre"),),
    numbers=(("pages", "number of pages", "avg max min sum"), ("published_year", "publication year", "min max")),
)
MEMBERS = Entity(
    "members",
    "member_id",
    "member",
    "members",
    "name",
    "name",
    categories=(("city", "city", "live in {v}", "lives in {v}"),),
    numbers=(("joined_year", "year of joining", "min max"),),
)

ENTITIES: dict[str, tuple[Entity, ...]] = {
    "shop": (CUSTOMERS, PRODUCTS, ORDERS),
    "school": (TEACHERS, COURSES, STUDENTS),
    "library": (AUTHORS, BOOKS, MEMBERS),
}
RELATIONS: dict[str, tuple[Relation, ...]] = {
    "shop": (
        Relation(
            ORDERS,
            CUSTOMERS,
            "customer_id",
            "were placed by {v}",
            "What is the name of the customer who placed the order with ID {v}?",
            "What are the names of the customers who have never placed an order?",
        ),
    ),
    "school": (
        Relation(
            COURSES,
            TEACHERS,
            "teacher_id",
            "are taught by {v}",
            "What is the name of the teacher who teaches the course {v}?",
            "What are the names of the teachers who do not teach any course?",
        ),
    ),
    "library": (
        Relation(
            BOOKS,
            AUTHORS,
            "author_id",
            "were written by {v}",
            "What is the name of the author who wrote the book '{v}'?",
            "What are the names of the authors who have not written any book?",
        ),
    ),
}


def shop_links(connection: sqlite3.Connection, rng: random.Random) -> Iterator[Candidate]:
    """Customers and products through orders and order items; BIRD-style evidence."""
    db = "shop"
    items = "order_items AS i JOIN orders AS o ON i.order_id = o.order_id"
    for name in _pick(rng, _values(connection, "customers", "name"), 4):
        yield Candidate(
            db,
            "link_filter",
            "join",
            "hard",
            f"What are the names of the products ordered by {name}?",
            Query(
                "DISTINCT p.name",
                f"{items} JOIN products AS p ON i.product_id = p.product_id "
                "JOIN customers AS c ON o.customer_id = c.customer_id",
                where=f"c.name = {lit(name)}",
            ),
        )
    for product in _pick(rng, _values(connection, "products", "name"), 4):
        yield Candidate(
            db,
            "link_sum",
            "join",
            "medium",
            f"How many units of the product {product} were ordered in total?",
            Query(
                "SUM(i.quantity)",
                "order_items AS i JOIN products AS p ON i.product_id = p.product_id",
                where=f"p.name = {lit(product)}",
            ),
        )
        yield Candidate(
            db,
            "link_reverse",
            "join",
            "hard",
            f"What are the names of the customers who ordered the product {product}?",
            Query(
                "DISTINCT c.name",
                f"{items} JOIN products AS p ON i.product_id = p.product_id "
                "JOIN customers AS c ON o.customer_id = c.customer_id",
                where=f"p.name = {lit(product)}",
            ),
        )
    for order_id in _pick(rng, _values(connection, "orders", "order_id"), 4):
        yield Candidate(
            db,
            "link_value",
            "join",
            "medium",
            f"What is the total value (price times quantity) of the order with ID {order_id}?",
            Query(
                "SUM(p.price * i.quantity)",
                "order_items AS i JOIN products AS p ON i.product_id = p.product_id",
                where=f"i.order_id = {order_id}",
            ),
        )
    for month in ("03", "07", "11"):
        yield Candidate(
            db,
            "date_filter",
            "filter",
            "medium",
            f"How many orders were placed in month {int(month)} of 2023?",
            Query("COUNT(*)", "orders", where=f"order_date LIKE '2023-{month}-%'"),
            evidence=f"order_date is written YYYY-MM-DD; month {int(month)} of 2023 means "
            f"order_date between '2023-{month}-01' and '2023-{month}-31'",
        )
    yield Candidate(
        db,
        "evidence_filter",
        "filter",
        "medium",
        "Which products are running low on stock? List their names.",
        Query("name", "products", where="stock < 5"),
        evidence="running low on stock refers to stock < 5",
    )
    yield Candidate(
        db,
        "evidence_filter",
        "filter",
        "medium",
        "How many products are well stocked?",
        Query("COUNT(*)", "products", where="stock >= 50"),
        evidence="well stocked refers to stock >= 50",
    )
    yield Candidate(
        db,
        "evidence_join",
        "join",
        "hard",
        "What are the IDs of the open orders of customers who live in Oslo?",
        Query(
            "o.order_id",
            "orders AS o JOIN customers AS c ON o.customer_id = c.customer_id",
            where="c.city = 'Oslo' AND o.status IN ('pending', 'shipped')",
        ),
        evidence="open orders are those whose status is 'pending' or 'shipped'",
    )
    yield Candidate(
        db,
        "link_argmax",
        "join",
        "hard",
        "Which product was ordered in the largest total quantity? Give its name.",
        Query(
            "p.name",
            "order_items AS i JOIN products AS p ON i.product_id = p.product_id",
            group_by="p.product_id",
            order_by=(("SUM(i.quantity)", "DESC"),),
            limit=1,
        ),
    )
    yield Candidate(
        db,
        "link_argmax",
        "join",
        "hard",
        "Which customer spent the most in total over all their orders (price times quantity)? Give the name.",
        Query(
            "c.name",
            f"{items} JOIN products AS p ON i.product_id = p.product_id "
            "JOIN customers AS c ON o.customer_id = c.customer_id",
            group_by="c.customer_id",
            order_by=(("SUM(p.price * i.quantity)", "DESC"),),
            limit=1,
        ),
    )


def school_links(connection: sqlite3.Connection, rng: random.Random) -> Iterator[Candidate]:
    """Students and courses through enrollments; BIRD-style evidence."""
    db = "school"
    enrolled = (
        "enrollments AS e JOIN students AS s ON e.student_id = s.student_id "
        "JOIN courses AS c ON e.course_id = c.course_id"
    )
    for name in _pick(rng, _values(connection, "students", "name"), 5):
        yield Candidate(
            db,
            "link_filter",
            "join",
            "medium",
            f"Which courses is {name} enrolled in? Give the titles.",
            Query("c.title", enrolled, where=f"s.name = {lit(name)}"),
        )
        yield Candidate(
            db,
            "link_agg",
            "join",
            "medium",
            f"What is the highest grade of {name}?",
            Query("MAX(e.grade)", enrolled, where=f"s.name = {lit(name)}"),
        )
    for title in _pick(rng, _values(connection, "courses", "title"), 5):
        yield Candidate(
            db,
            "link_reverse",
            "join",
            "medium",
            f"What is the average grade in the course {title}?",
            Query("AVG(e.grade)", enrolled, where=f"c.title = {lit(title)}"),
        )
        yield Candidate(
            db,
            "evidence_filter",
            "join",
            "hard",
            f"Which students passed the course {title}? List their names.",
            Query("s.name", enrolled, where=f"c.title = {lit(title)} AND e.grade >= 60"),
            evidence="passing a course means a grade of at least 60",
        )
        yield Candidate(
            db,
            "link_sorted",
            "join",
            "hard",
            f"List the names of the students enrolled in {title}, from the highest grade to the lowest.",
            Query("s.name", enrolled, where=f"c.title = {lit(title)}", order_by=(("e.grade", "DESC"),)),
        )
    for department in _pick(rng, _values(connection, "courses", "department"), 3):
        yield Candidate(
            db,
            "link_three",
            "join",
            "hard",
            f"How many enrollments are there in courses taught by teachers of the {department} department?",
            Query(
                "COUNT(*)",
                "enrollments AS e JOIN courses AS c ON e.course_id = c.course_id "
                "JOIN teachers AS t ON c.teacher_id = t.teacher_id",
                where=f"t.department = {lit(department)}",
            ),
        )
    yield Candidate(
        db,
        "evidence_filter",
        "filter",
        "medium",
        "How many students are seniors?",
        Query("COUNT(*)", "students", where="study_year = 4"),
        evidence="seniors are students in study_year 4",
    )
    yield Candidate(
        db,
        "link_argmax",
        "join",
        "hard",
        "Which course has the highest average grade? Give its title.",
        Query("c.title", enrolled, group_by="c.course_id", order_by=(("AVG(e.grade)", "DESC"),), limit=1),
    )
    yield Candidate(
        db,
        "link_having",
        "join",
        "hard",
        "What are the names of the students enrolled in at least 4 courses?",
        Query("s.name", enrolled, group_by="s.student_id", having="COUNT(*) >= 4"),
    )


def library_links(connection: sqlite3.Connection, rng: random.Random) -> Iterator[Candidate]:
    """Members and books through loans; BIRD-style evidence."""
    db = "library"
    lent = "loans AS l JOIN books AS b ON l.book_id = b.book_id JOIN members AS m ON l.member_id = m.member_id"
    for name in _pick(rng, _values(connection, "members", "name"), 5):
        yield Candidate(
            db,
            "link_filter",
            "join",
            "medium",
            f"Which books has {name} borrowed? Give the titles.",
            Query("DISTINCT b.title", lent, where=f"m.name = {lit(name)}"),
        )
        yield Candidate(
            db,
            "link_count",
            "join",
            "medium",
            f"How many loans has {name} made?",
            Query(
                "COUNT(*)", "loans AS l JOIN members AS m ON l.member_id = m.member_id", where=f"m.name = {lit(name)}"
            ),
        )
    for title in _pick(rng, _values(connection, "books", "title"), 5):
        yield Candidate(
            db,
            "link_count",
            "join",
            "medium",
            f"How many times was the book '{title}' borrowed?",
            Query("COUNT(*)", "loans AS l JOIN books AS b ON l.book_id = b.book_id", where=f"b.title = {lit(title)}"),
        )
        yield Candidate(
            db,
            "link_reverse",
            "join",
            "medium",
            f"Which members borrowed the book '{title}'? Give their names.",
            Query("DISTINCT m.name", lent, where=f"b.title = {lit(title)}"),
        )
    for author in _pick(rng, _values(connection, "authors", "name"), 4):
        yield Candidate(
            db,
            "link_three",
            "join",
            "hard",
            f"What are the names of the members who borrowed a book written by {author}?",
            Query(
                "DISTINCT m.name",
                f"{lent} JOIN authors AS a ON b.author_id = a.author_id",
                where=f"a.name = {lit(author)}",
            ),
        )
    for city in _pick(rng, _values(connection, "members", "city"), 3):
        yield Candidate(
            db,
            "evidence_filter",
            "join",
            "hard",
            f"How many books borrowed by members who live in {city} are still on loan?",
            Query(
                "COUNT(*)",
                "loans AS l JOIN members AS m ON l.member_id = m.member_id",
                where=f"m.city = {lit(city)} AND l.returned = 0",
            ),
            evidence="a loan is still on loan when returned = 0",
        )
    yield Candidate(
        db,
        "evidence_filter",
        "filter",
        "medium",
        "How many loans are still open?",
        Query("COUNT(*)", "loans", where="returned = 0"),
        evidence="a loan is open when returned = 0",
    )
    yield Candidate(
        db,
        "link_argmax",
        "join",
        "hard",
        "Which book was borrowed the most times? Give its title.",
        Query(
            "b.title",
            "loans AS l JOIN books AS b ON l.book_id = b.book_id",
            group_by="b.book_id",
            order_by=(("COUNT(*)", "DESC"),),
            limit=1,
        ),
    )
    yield Candidate(
        db,
        "date_filter",
        "filter",
        "medium",
        "How many loans were made in the first quarter of 2024?",
        Query("COUNT(*)", "loans", where="loan_date BETWEEN '2024-01-01' AND '2024-03-31'"),
        evidence="the first quarter is January to March; loan_date is written YYYY-MM-DD",
    )


_LINKS: dict[str, Callable[[sqlite3.Connection, random.Random], Iterator[Candidate]]] = {
    "shop": shop_links,
    "school": school_links,
    "library": library_links,
}


def candidates(db_id: str, connection: sqlite3.Connection, seed: int) -> list[Candidate]:
    """Every templated question for ``db_id`` (unverified), in a fixed order."""
    rng = random.Random(f"sqlbench|{seed}|{db_id}|questions")
    found: list[Candidate] = []
    for entity in ENTITIES[db_id]:
        found.extend(entity_candidates(db_id, entity, connection, rng))
    for relation in RELATIONS[db_id]:
        found.extend(relation_candidates(db_id, relation, connection, rng))
    found.extend(_LINKS[db_id](connection, rng))
    return found


# ---------------------------------------------------------------------------- verification


class Rejected(Exception):
    """A candidate whose gold result is empty, too large, order-dependent or tied."""


def _run(connection: sqlite3.Connection, sql: str, reverse: bool) -> list[tuple]:
    connection.execute(f"PRAGMA reverse_unordered_selects = {int(reverse)}")
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.execute("PRAGMA reverse_unordered_selects = 0")


def verify(connection: sqlite3.Connection, query: Query) -> list[tuple]:
    """The gold result of ``query``; raises Rejected naming why it is not usable."""
    rows = _run(connection, query.sql, reverse=False)
    if not rows:
        raise Rejected("empty result")
    if all(value is None for row in rows for value in row):
        raise Rejected("only NULL values")
    if len(rows) > MAX_RESULT_ROWS:
        raise Rejected(f"{len(rows)} rows (> {MAX_RESULT_ROWS})")
    reversed_rows = _run(connection, query.sql, reverse=True)
    if query.order_by:
        if reversed_rows != rows:
            raise Rejected("ordered result depends on the scan order")
    elif Counter(reversed_rows) != Counter(rows):
        raise Rejected("result depends on the scan order")
    keys_sql = query.order_keys_sql()
    if keys_sql is not None:
        keys = _run(connection, keys_sql, reverse=False)
        decisive = len(keys) if query.limit is None else min(len(keys), query.limit + 1)
        if any(keys[i] == keys[i + 1] for i in range(decisive - 1)):
            raise Rejected("tie in the ordering keys")
    for clause in ("where", "having"):
        if getattr(query, clause):
            unfiltered = dataclasses.replace(query, **{clause: ""})  # type: ignore[arg-type]  # a str field
            if Counter(_run(connection, unfiltered.sql, reverse=False)) == Counter(rows):
                raise Rejected(f"the {clause.upper()} condition keeps every row")
    return rows


# ---------------------------------------------------------------------------- output


@dataclass
class GenerationReport:
    """What generate() kept and dropped."""

    kept: dict[str, int] = field(default_factory=dict)
    train: int = 0
    dev: int = 0
    rejected: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        kept = ", ".join(f"{db} {n}" for db, n in self.kept.items())
        rejected = ", ".join(f"{reason} x{n}" for reason, n in self.rejected.most_common()) or "none"
        return f"kept {kept}; train {self.train}, dev {self.dev}; rejected: {rejected}"


def _select(
    verified: list[tuple[Candidate, list[tuple]]], rng: random.Random
) -> list[list[tuple[Candidate, list[tuple]]]]:
    """Round-robin over templates (shuffled within each) up to QUESTIONS_PER_DATABASE; groups by template."""
    groups: dict[str, list[tuple[Candidate, list[tuple]]]] = {}
    for item in verified:
        groups.setdefault(item[0].template, []).append(item)
    for name in sorted(groups):
        rng.shuffle(groups[name])
    chosen: dict[str, list[tuple[Candidate, list[tuple]]]] = {name: [] for name in sorted(groups)}
    total, depth = 0, 0
    while total < QUESTIONS_PER_DATABASE and any(len(g) > depth for g in groups.values()):
        for name in sorted(groups):
            if depth < len(groups[name]) and total < QUESTIONS_PER_DATABASE:
                chosen[name].append(groups[name][depth])
                total += 1
        depth += 1
    return [items for items in chosen.values() if items]


def _row(candidate: Candidate, result: list[tuple]) -> dict[str, Any]:
    return {
        "db_id": candidate.db_id,
        "question": candidate.question,
        "query": candidate.query.sql,
        "evidence": candidate.evidence,
        "template": candidate.template,
        "category": candidate.category,
        "difficulty": candidate.difficulty,
        "gold_result": [list(row) for row in result],
    }


def _json_lines_array(rows: list[dict[str, Any]]) -> str:
    """A JSON array with one object per line (valid JSON for Spider tools, readable diffs)."""
    body = ",\n".join(json.dumps(row, ensure_ascii=False, sort_keys=False) for row in rows)
    return f"[\n{body}\n]\n"


def _tables_entry(db_id: str, connection: sqlite3.Connection) -> dict[str, Any]:
    """Spider's tables.json entry for one database."""
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
    ]
    columns: list[list[Any]] = [[-1, "*"]]
    types = ["text"]
    primary: list[int] = []
    foreign: list[list[int]] = []
    index: dict[tuple[str, str], int] = {}
    for t, table in enumerate(tables):
        for _, name, kind, _, _, pk in connection.execute(f"PRAGMA table_info({table})"):
            index[(table, name)] = len(columns)
            if pk:
                primary.append(len(columns))
            columns.append([t, name])
            types.append("number" if kind.upper() in ("INTEGER", "REAL") else "text")
    for table in tables:
        for row in connection.execute(f"PRAGMA foreign_key_list({table})"):
            foreign.append([index[(table, row[3])], index[(row[2], row[4])]])
    return {
        "db_id": db_id,
        "table_names_original": tables,
        "table_names": [t.replace("_", " ") for t in tables],
        "column_names_original": columns,
        "column_names": [[t, name.replace("_", " ")] for t, name in columns],
        "column_types": types,
        "primary_keys": primary,
        "foreign_keys": foreign,
    }


def generate(out_dir: str | os.PathLike = HERE, seed: int = 0) -> GenerationReport:
    """Write the databases, train_spider.json, dev.json and tables.json under ``out_dir``."""
    out = Path(out_dir)
    report = GenerationReport()
    train: list[dict[str, Any]] = []
    dev: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    seen_questions: set[str] = set()
    for db_id in DATABASES:
        db_path = out / "database" / db_id / f"{db_id}.sqlite"
        build_database(db_id, db_path, seed)
        connection = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            connection.execute("PRAGMA query_only = ON")
            verified: list[tuple[Candidate, list[tuple]]] = []
            seen_sql: set[str] = set()
            for candidate in candidates(db_id, connection, seed):
                sql = candidate.query.sql
                if candidate.question in seen_questions or sql in seen_sql:
                    report.rejected["duplicate"] += 1
                    continue
                try:
                    result = verify(connection, candidate.query)
                except Rejected as exc:
                    report.rejected[str(exc)] += 1
                    continue
                seen_questions.add(candidate.question)
                seen_sql.add(sql)
                verified.append((candidate, result))
            tables.append(_tables_entry(db_id, connection))
        finally:
            connection.close()
        groups = _select(verified, random.Random(f"sqlbench|{seed}|{db_id}|select"))
        report.kept[db_id] = sum(len(g) for g in groups)
        for items in groups:
            n_dev = round(len(items) / DEV_EVERY) if len(items) >= 3 else 0
            for position, (candidate, result) in enumerate(items):
                (dev if position < n_dev else train).append(_row(candidate, result))
    report.train, report.dev = len(train), len(dev)
    atomic_write_text(out / "train_spider.json", _json_lines_array(train))
    atomic_write_text(out / "dev.json", _json_lines_array(dev))
    atomic_write_text(out / "tables.json", json.dumps(tables, indent=1) + "\n")
    return report


def compare_outputs(expected_dir: Path, actual_dir: Path) -> list[str]:
    """Differences between two generated trees (JSON files byte for byte, databases by dump)."""
    problems = []
    for name in ("train_spider.json", "dev.json", "tables.json"):
        a, b = expected_dir / name, actual_dir / name
        if not a.is_file():
            problems.append(f"{a}: missing")
        elif a.read_bytes() != b.read_bytes():
            problems.append(f"{a}: differs from a fresh generation")
    for db_id in DATABASES:
        a = expected_dir / "database" / db_id / f"{db_id}.sqlite"
        b = actual_dir / "database" / db_id / f"{db_id}.sqlite"
        if not a.is_file():
            problems.append(f"{a}: missing")
        elif database_dump(a) != database_dump(b):
            problems.append(f"{a}: content differs from a fresh generation")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate (default) or --check the shipped files."""
    parser = argparse.ArgumentParser(
        prog="python -m apmpo.data.sqlbench.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: the package's sqlbench folder)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0, the shipped benchmark)")
    parser.add_argument(
        "--check", action="store_true", help="regenerate into a temporary folder and compare with --out"
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            report = generate(scratch, args.seed)
            problems = compare_outputs(args.out, Path(scratch))
        for problem in problems:
            print(problem, file=sys.stderr)
        print(("out of date: " if problems else "up to date: ") + report.summary())
        return 1 if problems else 0
    report = generate(args.out, args.seed)
    print(f"wrote {args.out}: {report.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

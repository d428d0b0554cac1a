"""Data files shipped inside the package: the paper's benchmarks and training sets, by short name.

The files live in ``apmpo/data/datasets/<name>/<split>.jsonl`` (package data, so an
installed copy has them too), copied byte for byte from public repositories; their
origin, licence, row count, fields and SHA-256 are in ``apmpo/data/datasets/README.md``.

Short names come from that layout, so there is no second list to keep in step:

- ``NAME/SPLIT`` names one file (``gsm8k/test``, ``math500/test``);
- ``NAME`` alone names the only file of a folder (``math500``, ``aime24``,
  ``math_train``); for a folder with several files (``gsm8k``) it is an error that lists
  them.

A reference to a shipped file is ``shipped:NAME`` anywhere a data file is accepted
(``apmpo eval --data``, a suite entry, ``data.train`` / ``data.eval`` of a training
config); the bare ``NAME`` works too when no file of that name exists (see
:func:`apmpo.data.sources.resolve_data_reference`). :func:`shipped_path` returns the
file itself, for code that wants a path.

Datasets whose licence does not allow us to redistribute them are listed in
:data:`NOT_SHIPPED` with the reason and where to get them; asking for one is an error
that says so.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "NOT_SHIPPED",
    "SHIPPED_DIR",
    "SHIPPED_PREFIX",
    "not_shipped_reason",
    "shipped_datasets",
    "shipped_names",
    "shipped_path",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "datasets"
"""The folder holding the shipped files (``<name>/<split>.jsonl``) and their README."""
SHIPPED_PREFIX = "shipped:"
"""Prefix of a reference to a shipped file: ``shipped:math500``, ``shipped:gsm8k/test``."""
_SUFFIX = ".jsonl"

NOT_SHIPPED: dict[str, tuple[str, str]] = {
    "minerva_math": (
        "its problems are MIT OpenCourseWare course material (CC BY-NC-SA 4.0, non-commercial), released with "
        "the Minerva paper without a licence of their own, which does not fit an Apache-2.0 package",
        "copy examples/simplelr_math_eval/data/minerva_math/test.jsonl from hkust-nlp/simpleRL-reason (or "
        "evaluation/data/minerva_math/test.jsonl from QwenLM/Qwen2.5-Math), or use the Hub dataset "
        "hf:math-ai/minervamath@default:test",
    ),
}
"""Datasets deliberately left out: name -> (why, how to get them); details in the datasets README."""


def not_shipped_reason(name: str) -> str | None:
    """Why dataset ``name`` (``minerva_math`` or ``minerva_math/test``) is not shipped, or None if that is not why."""
    entry = NOT_SHIPPED.get(str(name).removeprefix(SHIPPED_PREFIX).split("/")[0])
    return None if entry is None else f"not shipped with apmpo: {entry[0]} (apmpo/data/datasets/README.md)"


def shipped_datasets() -> dict[str, Path]:
    """Every shipped short name and its file: ``NAME/SPLIT`` for each file, plus ``NAME`` for one-file folders."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in SHIPPED_DIR.iterdir() if p.is_dir()):
        files = sorted(folder.glob(f"*{_SUFFIX}"))
        for file in files:
            found[f"{folder.name}/{file.stem}"] = file
        if len(files) == 1:
            found[folder.name] = files[0]
    return dict(sorted(found.items()))


def shipped_names() -> list[str]:
    """The short names one types: a folder's name when it holds one file, else ``NAME/SPLIT``."""
    datasets = shipped_datasets()
    return [name for name in datasets if "/" not in name or name.split("/")[0] not in datasets]


def shipped_path(name: str) -> Path:
    """The shipped file called ``name`` (``"math500"``, ``"gsm8k/test"``, ``"shipped:aime24"``).

    Raises ValueError for a name that is not shipped, listing the shipped names (and,
    for a dataset left out on purpose, why and where to get it).
    """
    text = str(name)
    key = text[len(SHIPPED_PREFIX) :] if text.startswith(SHIPPED_PREFIX) else text
    key = key.strip().strip("/")
    if key.endswith(_SUFFIX):
        key = key[: -len(_SUFFIX)]
    datasets = shipped_datasets()
    if key in datasets:
        return datasets[key]
    if not_shipped_reason(key):
        raise ValueError(f"{text}: {not_shipped_reason(key)}; to get it: {NOT_SHIPPED[key.split('/')[0]][1]}")
    splits = [n for n in datasets if n.startswith(f"{key}/")]
    if splits:
        raise ValueError(f"{text}: the shipped dataset {key!r} has several files; name one: {', '.join(splits)}")
    raise ValueError(f"{text}: not a shipped dataset; shipped: {', '.join(shipped_names())}")

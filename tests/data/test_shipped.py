"""The data files shipped in the package: integrity against their README, lookup, use by the trainer, the wheel."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from apmpo.data import load_examples, resolve_data_reference, shipped_names, shipped_path
from apmpo.data.shipped import NOT_SHIPPED, SHIPPED_DIR, shipped_datasets

REPO = Path(__file__).resolve().parents[2]
README = SHIPPED_DIR / "README.md"


def _readme_tables() -> tuple[dict[str, int], dict[str, str]]:
    """(rows per file, sha256 per file) as the README states them."""
    text = README.read_text(encoding="utf-8")
    rows = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| `[^`]+` \| `([^`]+)` \| (\d+) \|", text, re.M)}
    sha = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+\.jsonl)` \| `([0-9a-f]{64})` \|", text, re.M)}
    return rows, sha


def test_every_shipped_file_matches_its_readme_entry():
    rows, sha = _readme_tables()
    files = sorted(str(p.relative_to(SHIPPED_DIR)) for p in SHIPPED_DIR.glob("*/*.jsonl"))
    assert files == sorted(rows) == sorted(sha), "the README must list exactly the shipped files"
    for name in files:
        data = (SHIPPED_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha[name], f"{name} changed: it must stay a byte-for-byte copy"
        assert sum(1 for line in data.splitlines() if line.strip()) == rows[name], name
    assert (SHIPPED_DIR / "gsm8k" / "LICENSE").read_text().startswith("MIT License")


def test_short_names_and_errors():
    assert shipped_names() == ["aime24", "aime25", "amc23", "gsm8k/test", "gsm8k/train", "math500", "math_train",
                               "olympiadbench"]
    assert shipped_path("math500") == SHIPPED_DIR / "math500" / "test.jsonl"
    assert shipped_path("shipped:gsm8k/test") == shipped_path("gsm8k/test.jsonl") == SHIPPED_DIR / "gsm8k" / "test.jsonl"
    assert shipped_path("math500/test") == shipped_path("math500")
    assert set(shipped_names()) <= set(shipped_datasets())
    assert set(NOT_SHIPPED) == {"minerva_math"} and not (SHIPPED_DIR / "minerva_math").exists()


@pytest.mark.parametrize("name, words", [
    ("gsm8k", "several files; name one: gsm8k/test, gsm8k/train"),
    ("math501", "not a shipped dataset; shipped: aime24, aime25"),
    ("minerva_math", "not shipped with apmpo: .*CC BY-NC-SA 4.0.*simpleRL-reason"),
])
def test_unknown_names_are_errors_that_say_why(name, words):
    with pytest.raises(ValueError, match=words):
        shipped_path(name)


def test_references_resolve_to_the_shipped_files(tmp_path, monkeypatch):
    assert resolve_data_reference("shipped:aime25") == resolve_data_reference("aime25") == shipped_path("aime25")
    examples = load_examples("shipped:aime25")
    assert len(examples) == 30 and examples[0]["answer"] == "70"
    with pytest.raises(ValueError, match="math501: no such file, and not a shipped dataset"):
        load_examples("math501")
    with pytest.raises(FileNotFoundError, match="x.jsonl: no such file"):
        load_examples(tmp_path / "x.jsonl")
    # an existing path always wins over a shipped name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "math500").mkdir()
    assert resolve_data_reference("math500") == Path("math500")


def test_paper_math_config_finds_math_train_and_math500_by_default():
    from apmpo.models import load_model_and_tokenizer
    from apmpo.trainer.config import load_config, packaged_config, validate_config
    from apmpo.trainer.setup import load_data

    config = load_config(packaged_config("paper_math_gpu.yaml"), ["model.name=tiny", "model.device=cpu",
                                                                  "model.dtype=float32"])
    assert config.data.train == "shipped:math_train" and config.data.eval == "shipped:math500"
    validate_config(config)  # raises listing the problems, data files included
    _, tokenizer = load_model_and_tokenizer("tiny", seed=0)
    data = load_data(config.data, tokenizer, seed=0)
    assert len(data.train) == 7470 and len(data.eval) == 500  # 4 MATH train rows without an answer are skipped
    assert any("4 rows skipped" in line for line in data.description)


def test_wheel_ships_the_files_and_an_installed_copy_finds_them(tmp_path):
    """Build a wheel from a copy of the sources, install it (not editable) and read a shipped file from it."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "apmpo", source / "apmpo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    try:
        import setuptools  # noqa: F401  (present: build without fetching a build environment)

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("apmpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"apmpo/data/datasets/{p.relative_to(SHIPPED_DIR)}" for p in SHIPPED_DIR.glob("*/*") if p.is_file()}
    assert expected and expected <= names
    assert "apmpo/data/datasets/README.md" in names and "apmpo/configs/eval_math_suite.yaml" in names

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = (
        "import json, apmpo, apmpo.data as d; from apmpo.eval.suites import load_suite; "
        "s = load_suite('math'); "
        "print(json.dumps([apmpo.__file__, str(d.shipped_path('math500')), len(d.load_examples('math500')), "
        "[b.path for b in s.benchmarks]]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(target),
                            "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    package_file, math500, rows, paths = json.loads(result.stdout.strip().splitlines()[-1])
    assert package_file.startswith(str(target)) and math500.startswith(str(target))
    assert rows == 500 and paths[0] == "shipped:math500"

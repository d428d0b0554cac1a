"""The test suite's own rules: no skip hiding a broken project module, no machine-specific absolute path."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", *patterns], capture_output=True, text=True, check=False)
    files = [REPO / line for line in out.stdout.splitlines() if line]
    if not files:  # not a git checkout (an sdist): every file under the repository
        files = [p for pattern in patterns for p in REPO.rglob(pattern.removeprefix("*")) if ".venv" not in p.parts]
    return [f for f in files if f.is_file()]


def test_no_importorskip_of_project_modules():
    """A plug-in or module of apmpo that fails to import is a failure; only a missing third-party library skips."""
    bad = [f"{path.relative_to(REPO)}: {line.strip()}" for path in _tracked("tests/*.py")
           for line in path.read_text(encoding="utf-8").splitlines()
           if re.search(r"importorskip\(\s*[\"']apmpo", line)]
    assert not bad, "\n".join(bad)


MACHINE_PATHS = re.compile(r"(?<![\w.~-])/(?:work|home|root|Users|mnt|scratch)/[\w.-]+")
"""Absolute paths that only exist on some machine (a developer's home, this workplace's /work)."""


def test_no_machine_specific_absolute_paths():
    files = _tracked("*.py", "*.md", "*.yaml", "*.yml", "*.sh", "*.toml", "*.cfg", "*.txt", "*.json", "*.csv")
    bad = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        bad += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in MACHINE_PATHS.finditer(text)]
    assert len(files) > 50  # the repository was read
    assert not bad, "machine-specific paths:\n" + "\n".join(sorted(set(bad)))


def test_no_reference_to_the_development_data_folder():
    """Tests and docs read the shipped copies (apmpo/data/datasets), never the development folder beside the repo."""
    files = _tracked("*.py", "*.md", "*.yaml", "*.yml", "*.sh", "*.toml", "*.cfg", "*.txt")
    pattern = re.compile(r"shared[/\\]data|APMPO_SHARED_DATA")
    bad = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not bad, "references to the development data folder (use apmpo.data.shipped_path):\n" + "\n".join(bad)

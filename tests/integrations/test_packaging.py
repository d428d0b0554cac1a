"""Importing apmpo or apmpo.integrations never imports verl or TRL (optional, heavy dependencies)."""

from __future__ import annotations

import subprocess
import sys


def test_integrations_package_imports_neither_library():
    code = (
        "import sys, apmpo, apmpo.integrations, apmpo.integrations.verl_reward; "
        "bad = [m for m in ('trl', 'verl', 'ray', 'tensordict') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr

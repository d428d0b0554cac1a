"""Where a number was measured: the machine, the library versions and the code version.

Studies record it with every training invocation, benchmarks with every result file.
Nothing here imports a heavy library: versions come from the installed packages'
metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PACKAGES", "git_state", "machine_info"]

DEFAULT_PACKAGES = ("torch", "transformers")
"""Packages whose versions :func:`machine_info` reports unless told otherwise."""


def _cpu_fields() -> dict[str, Any]:
    """CPU model name, SIMD flags that matter for matmuls, and memory, from /proc (Linux); else the platform's name."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    if names:
        info["cpu"] = names[0]
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags)
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gb"] = round(int(handle.readline().split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def machine_info(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """CPU model, cores, memory, load average, OS, Python and the versions of ``packages`` (None: not installed)."""
    info: dict[str, Any] = _cpu_fields()
    info.update(cores=os.cpu_count(), platform=platform.platform(), python=platform.python_version())
    for name in packages:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


def git_state(root: str | os.PathLike | None = None) -> str | None:
    """Short commit of the git checkout holding the package, noting uncommitted changes under apmpo/ (None outside git)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "apmpo"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}{' with uncommitted changes' if dirty else ''}"

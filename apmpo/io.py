"""Atomic file writes: every file the package writes goes through a temporary file and ``os.replace``.

A crash or kill leaves either the old file or the new one, never a half-written one.
The temporary file lives in the destination folder (``.<name>.<random><suffix>``, so a
glob for the real names never matches it), is flushed and fsynced before the rename,
and gets the mode a plain ``open(path, "w")`` would (0666 minus the umask) instead of
``mkstemp``'s private 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "atomic_savefig"]


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it onto ``path`` atomically.

    ``suffix`` keeps the extension libraries look at (e.g. ``".png"`` for matplotlib).
    The parent folder is created if needed. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)

    return atomic_write(path, write)


def atomic_write_json(
    path: str | os.PathLike, data: Any, *, indent: int = 2, default: Callable[[Any], Any] | None = None
) -> Path:
    """Write ``data`` as indented JSON (non-ASCII kept, trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=default) + "\n")


def atomic_savefig(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """``fig.savefig`` to ``path`` atomically (the format follows ``path``'s extension)."""
    path = Path(path)
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None), suffix=path.suffix
    )

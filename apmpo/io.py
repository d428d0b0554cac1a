"""Atomic file writes: every file the package writes goes through a temporary file and ``os.replace``.

A crash or kill leaves either the old file or the new one, never a half-written one.
Directories (checkpoints, converted models) are assembled under a temporary name beside
their destination and renamed into place (:func:`atomic_directory`).
The temporary file lives in the destination folder (``.<name>.<random><suffix>``, so a
glob for the real names never matches it), is flushed and fsynced before the rename,
and gets the mode a plain ``open(path, "w")`` would (0666 minus the umask) instead of
``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_directory",
    "atomic_savefig",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "pyplot",
]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file."""
    return 0o666 & ~_umask()


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


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, tmp_prefix: str | None = None) -> Iterator[Path]:
    """Fill the yielded temporary directory; when the block ends without an error it becomes ``path``.

    The temporary directory is created beside ``path`` (name ``tmp_prefix`` + random,
    default ``.<name>.tmp-``) and removed if the block raises. An existing ``path`` is
    first renamed to ``<tmp_prefix>old-<pid>`` and deleted after the swap, so ``path``
    always holds a complete directory, the old one or the new one. The directory and
    its files get the modes a plain ``mkdir`` and ``open`` would give.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = tmp_prefix if tmp_prefix is not None else f".{path.name}.tmp-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700
        for item in tmp.iterdir():
            if item.is_file():
                os.chmod(item, _default_mode())
        if path.exists():
            trash = path.parent / f"{prefix}old-{os.getpid()}"
            os.rename(path, trash)
            os.rename(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)

    return atomic_write(path, write)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

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


def pyplot() -> Any:
    """matplotlib's ``pyplot`` on the non-interactive Agg backend (figures are only ever written to files)."""
    # heavy (matplotlib): imported only to draw
    import matplotlib

    matplotlib.use("Agg")
    # heavy (matplotlib): imported only to draw
    import matplotlib.pyplot as plt

    return plt

"""Safe file writes: atomic files and directories, all-or-nothing appends, and a clear error on a full disk.

- :func:`atomic_write` and friends: every file the package writes whole goes through a
  temporary file and ``os.replace``. A crash or kill leaves either the old file or the
  new one, never a half-written one. The temporary file lives in the destination folder
  (``.<name>.<random><suffix>``, so a glob for the real names never matches it), is
  flushed and fsynced before the rename, and gets the mode a plain ``open(path, "w")``
  would (0666 minus the umask) instead of ``mkstemp``'s private 0600.
- :func:`atomic_directory`: directories (checkpoints, converted models) are assembled
  under a temporary name beside their destination, every file in them fsynced, and
  renamed into place; a failure anywhere, the swap with an existing directory included,
  leaves the previous directory as it was.
- :func:`append_text`: the append-only logs (metrics.jsonl, samples.jsonl, evaluation
  records) grow by whole lines: an append that fails part-way (a full disk, an I/O
  error, an exception raised by a signal handler mid-write) is cut back to the file's
  previous length, so the file keeps every earlier line and no torn one.
- :class:`StorageError`: a write that fails because the disk is full (ENOSPC, EDQUOT) or
  the device fails (EIO) is reported as one message naming the path, the space the
  write needs and the space left, instead of a library's traceback. Libraries do not
  always say why a write failed (``torch.save`` raises a bare ``RuntimeError``;
  safetensors says "os error 28" in its message), so :func:`storage_failure` also
  counts a failure as a full disk when less space is free than the write needs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_STORAGE",
    "STORAGE_ERRNOS",
    "StorageError",
    "append_text",
    "atomic_directory",
    "atomic_savefig",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "human_bytes",
    "pyplot",
    "storage_failure",
]


STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EIO: "the device reported an I/O error",
}
"""Write failures reported as :class:`StorageError`, with what each means."""
EXIT_STORAGE = 74
"""Exit status of a command stopped by a :class:`StorageError` (EX_IOERR of sysexits.h)."""
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]")


class StorageError(OSError):
    """A write failed for lack of space or a failing device; the message names the path and the space needed.

    ``exit_code`` is the status ``apmpo`` exits with (74, EX_IOERR).
    """

    exit_code = EXIT_STORAGE

    def __init__(self, code: int, message: str):
        super().__init__(code, message)

    def __str__(self) -> str:
        return str(self.strerror)


def human_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _error_code(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    match = _OS_ERROR_IN_TEXT.search(str(exc))  # safetensors: "... (os error 28)"; wrapped OSErrors: "[Errno 28]"
    if match:
        return int(match.group(1) or match.group(2))
    return None


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def storage_failure(
    exc: BaseException, path: str | os.PathLike, needed: int | None, *, what: str = "writing", after: str = ""
) -> StorageError | None:
    """The :class:`StorageError` to raise for ``exc``, a failed write of about ``needed`` bytes to ``path``; None if
    ``exc`` is not a storage failure.

    A storage failure is an error whose code (``OSError.errno``, or an "os error N" in the
    text of a library's error) is in :data:`STORAGE_ERRNOS`, or any write error while the
    file system has less than ``needed`` bytes free. ``after`` is appended to the
    message (e.g. what was kept and how to resume). A :class:`StorageError` is passed on as it is (None).
    """
    if not isinstance(exc, Exception) or isinstance(exc, StorageError):  # a StorageError already says it all
        return None
    path = Path(path)
    code = _error_code(exc)
    free = _free_bytes(path)
    if code is not None and code in STORAGE_ERRNOS:
        said = f"{errno.errorcode.get(code, code)}: {exc}"
    elif needed is None or free is None or free >= needed:
        return None
    else:  # the library did not say why; the free space does
        code, said = errno.ENOSPC, f"{type(exc).__name__}: {exc}"
    space = (f"it needs about {human_bytes(needed)}" if needed is not None else "") + (
        f"{'; ' if needed is not None else ''}{human_bytes(free)} free on that file system" if free is not None else ""
    )
    message = f"{what} {path} failed: {STORAGE_ERRNOS[code]} ({said})"
    if space:
        message += f"; {space}"
    return StorageError(code, message + (f". {after}" if after else ""))


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
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        failure = storage_failure(exc, path, None)
        if failure is not None:
            raise failure from exc
        raise
    return path


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to the disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):  # platforms that cannot open a directory: nothing to flush
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike,
    *,
    tmp_prefix: str | None = None,
    what: str = "writing",
    needed: Callable[[], int | None] | None = None,
    after: str = "",
) -> Iterator[Path]:
    """Fill the yielded temporary directory; when the block ends without an error it becomes ``path``.

    The temporary directory is created beside ``path`` (name ``tmp_prefix`` + random,
    default ``.<name>.tmp-``) and removed if the block raises. Every file in it is
    fsynced before it is renamed into place, and the parent folder after. An existing
    ``path`` is first renamed to ``<tmp_prefix>old-<pid>`` and deleted after the swap
    (put back if the swap fails), so ``path`` always holds a complete directory, the old
    one or the new one. The directory and its files get the modes a plain ``mkdir`` and
    ``open`` would give.

    A failure that is a full disk or a failing device (:func:`storage_failure`) is raised
    as :class:`StorageError`: "``what`` ``path`` failed", the space ``needed()`` returns,
    and ``after`` (what was kept, how to recover).
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
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                _fsync(item)
        _fsync(tmp)
        _swap_into_place(tmp, path, path.parent / f"{prefix}old-{os.getpid()}")
        _fsync(path.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = storage_failure(exc, path, needed() if needed is not None else None, what=what, after=after)
        if failure is not None:
            raise failure from exc
        raise


def _swap_into_place(tmp: Path, path: Path, trash: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` goes to ``trash`` first and comes back if the rename fails."""
    if not path.exists():
        os.rename(tmp, path)
        return
    os.rename(path, trash)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(trash, path)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def append_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> int:
    """Append ``text`` (UTF-8) to ``path`` all or nothing; returns the bytes written.

    The file is created if needed (with its parent folder). If the write fails part-way --
    an ``OSError``, or any exception (e.g. raised by a signal handler) interrupting it --
    the file is truncated back to its previous length before the error propagates; a
    storage failure is raised as :class:`StorageError`. ``fsync`` makes the appended
    bytes durable before returning (evaluation records; the training logs skip it).
    """
    path = Path(path)
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # open()'s mode: 0666 minus the umask
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        except BaseException as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:  # pragma: no cover - truncating frees space, so it does not fail for lack of it
                pass
            failure = storage_failure(
                exc, path, len(data), what="appending to", after="The lines written before are intact"
            )
            if failure is not None:
                raise failure from exc
            raise
    finally:
        os.close(fd)
    return len(data)


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

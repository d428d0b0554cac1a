"""Fault injection for the storage tests: a stand-in ``os`` module whose chosen calls fail like a full or failing disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

__all__ = ["FailingOs", "disk_error"]


def disk_error(code: int = errno.ENOSPC) -> OSError:
    """The ``OSError`` a write gets from a full disk (ENOSPC) or a failing device (EIO)."""
    return OSError(code, os.strerror(code))


class FailingOs:
    """Delegates to ``os``, except that writes to files named ``name`` fail with ``code``.

    Set it as a module's ``os`` (``monkeypatch.setattr(apmpo.io, "os", FailingOs(...))``)
    to touch only that module. ``skip`` opens of a matching file succeed first; from the
    next one on, ``write`` writes half of its data and then raises (a torn write, as a
    disk filling up mid-write gives), or, with ``call="fsync"``, ``fsync`` raises.
    Other calls named in ``fail`` (e.g. ``{"rename": 1}``) raise on their n-th use.
    """

    def __init__(self, name: str | None = None, code: int = errno.ENOSPC, *, skip: int = 0, call: str = "write",
                 fail: dict[str, int] | None = None):
        self.name, self.code, self.skip, self.call = name, code, skip, call
        self.fail = dict(fail or {})
        self.calls: dict[str, int] = {}
        self._opens = 0
        self._armed: set[int] = set()

    def _count(self, attr: str) -> None:
        if attr in self.fail:
            self.calls[attr] = self.calls.get(attr, 0) + 1
            if self.calls[attr] == self.fail[attr]:
                raise disk_error(self.code)

    def __getattr__(self, attr: str) -> Any:
        real = getattr(os, attr)
        if attr not in self.fail or not callable(real):
            return real

        def counted(*args, **kwargs):
            self._count(attr)
            return real(*args, **kwargs)

        return counted

    def open(self, path, *args, **kwargs) -> int:
        self._count("open")
        fd = os.open(path, *args, **kwargs)
        if self.name is not None and Path(path).name == self.name:
            self._opens += 1
            if self._opens > self.skip:
                self._armed.add(fd)
        return fd

    def write(self, fd: int, data) -> int:
        self._count("write")
        if fd in self._armed and self.call == "write":
            os.write(fd, bytes(data[: max(1, len(data) // 2)]))
            raise disk_error(self.code)
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self._count("fsync")
        if fd in self._armed and self.call == "fsync":
            raise disk_error(self.code)
        os.fsync(fd)

    def close(self, fd: int) -> None:
        self._armed.discard(fd)
        os.close(fd)

"""Diagnostic worker handler: misbehaves on request, to test the pool's guarantees.

Not used by any reward. ``run(op, arg)`` with op:
``"echo"`` returns ``arg``; ``"sleep"`` sleeps ``arg`` seconds; ``"raise"`` raises
ValueError(arg); ``"exit"`` ends the process with code ``arg``; ``"segfault"`` kills it
with SIGSEGV; ``"alloc"`` allocates ``arg`` MiB; ``"write"`` tries to write a file at
path ``arg`` and returns the error text (a worker must not be able to write files);
``"pid"`` returns the worker's process id.
"""

from __future__ import annotations

import os
import signal
import time


def run(op: str, arg):
    if op == "echo":
        return arg
    if op == "sleep":
        time.sleep(float(arg))
        return "slept"
    if op == "raise":
        raise ValueError(str(arg))
    if op == "exit":
        os._exit(int(arg))
    if op == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)
    if op == "alloc":
        block = bytearray(int(arg) * 1024 * 1024)
        return len(block)
    if op == "write":
        try:
            with open(arg, "wb") as handle:
                handle.write(b"x" * 4096)
                handle.flush()
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "written"
    if op == "pid":
        return os.getpid()
    raise ValueError(f"unknown diagnostic op {op!r}")

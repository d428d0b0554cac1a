"""Entry point of a reward worker process: ``python .../_worker.py HANDLER MEMORY_MB``.

Started by :mod:`apmpo.rewards.pool`, never by users. It runs as a script and loads its
handler module (``_worker_math.py`` or ``_worker_sql.py`` beside it) by file path, so it
never imports the ``apmpo`` package; handler modules import only the standard library
and their checker (math-verify, sqlite3). Before importing anything heavy
the process limits itself (address space ``MEMORY_MB`` MiB unless 0, no data written
to any file, no core dumps), moves its real stdout aside for the protocol (so stray prints from
libraries cannot corrupt it) and imports the handler. It then prints ``{"ready": true}``
and answers one JSON line per task line ``{"id": n, "args": [...]}`` with
``{"id": n, "ok": true, "value": ...}`` or ``{"id": n, "ok": false, "error": "..."}``.
It exits on EOF of stdin or when its parent process is gone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time

# handler name -> (file beside this one, function); the module may define ``warm_up()``.
HANDLERS = {
    "math": ("_worker_math.py", "verify"),
    "sql": ("_worker_sql.py", "execute"),
    "diagnostic": ("_worker_diag.py", "run"),  # misbehaves on request; for the pool's tests
}


def _load(filename: str):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    spec = importlib.util.spec_from_file_location(f"apmpo_reward_worker_{filename[:-3]}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the reward worker module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _limit_resources(memory_mb: int) -> None:
    # POSIX only (resource): in the worker process
    import resource

    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # writing data to any regular file fails
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ... with EFBIG instead of killing us


def _exit_when_orphaned() -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in HANDLERS:
        sys.stderr.write(f"usage: python _worker.py {{{','.join(HANDLERS)}}} MEMORY_MB\n")
        return 2
    handler_name, memory_mb = argv[0], int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the parent's to handle
    _limit_resources(memory_mb)
    _exit_when_orphaned()
    protocol = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)

    filename, function_name = HANDLERS[handler_name]
    module = _load(filename)
    handler = getattr(module, function_name)
    warm_up = getattr(module, "warm_up", None)
    if warm_up is not None:
        warm_up()

    os.dup2(devnull, 2)  # start-up errors went to the parent; later noise goes nowhere
    protocol.write(b'{"ready": true}\n')
    protocol.flush()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        task = json.loads(line)
        try:
            reply = {"id": task["id"], "ok": True, "value": handler(*task["args"])}
        except BaseException as exc:  # noqa: BLE001 - every failure is reported for this item
            reply = {"id": task["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        try:
            data = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            data = json.dumps({"id": task["id"], "ok": False, "error": f"unserialisable result: {exc}"})
        protocol.write(data.encode() + b"\n")
        protocol.flush()


if __name__ == "__main__":
    del sys.path[0]  # this folder: its modules must not shadow the standard library's
    sys.exit(main(sys.argv[1:]))

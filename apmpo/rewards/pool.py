"""A bounded pool of sandboxed worker processes with a hard time budget per item.

Reward checks that can hang or blow up on model-generated input (sympy equivalence,
SQL execution) run here instead of in the caller. The pool guarantees, for every item
handed to :meth:`WorkerPool.map`:

* it finishes within its time budget: a worker that overruns is killed (SIGKILL) and
  replaced, and the item is reported as timed out;
* a crash (segfault, ``MemoryError`` past the address-space limit, ``os._exit``) or an
  exception inside the handler is reported for that item only;
* the caller never hangs: every wait is bounded by the earliest item deadline, and a
  worker that cannot even start raises :class:`WorkerStartError` after
  ``startup_timeout_s``.

Design (our choice; not from the paper, which does not describe its graders):

* Workers are plain ``subprocess`` children running the script ``_worker.py`` of this
  folder, not ``multiprocessing`` processes, so they never re-import the caller's ``__main__``
  (no ``if __name__ == "__main__"`` guard needed in training scripts), a single worker
  can be killed without breaking the others, and nothing is unpickled: tasks and
  results travel as JSON lines over the worker's stdin/stdout.
* Each worker sets ``RLIMIT_AS`` (``memory_mb``), ``RLIMIT_FSIZE = 0`` (writing data to
  any file fails with EFBIG) and ``RLIMIT_CORE = 0`` on itself before importing
  anything, and exits when its parent disappears. These limits are defence in depth:
  the handlers never execute model text as code (sympy parses it, SQLite runs it
  behind a read-only authorizer).
* Pools are created lazily on first use, kept per (handler, workers, memory_mb) and
  reused by later calls (the trainer scores every step; starting sympy workers costs
  seconds), and shut down at interpreter exit (:func:`shutdown_pools`).
* The time budget of an item starts when it is handed to a ready worker, so worker
  start-up (importing sympy) is never charged to an item.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

__all__ = [
    "Outcome",
    "WorkerPool",
    "WorkerStartError",
    "default_workers",
    "get_pool",
    "shutdown_pools",
]

# A worker may send at most this many bytes without a newline before it is considered broken.
_MAX_LINE_BYTES = 1 << 20
# The worker runs as a script, not as ``-m apmpo.rewards._worker``, so that it never imports
# the ``apmpo`` package (whose ``__init__`` pulls in torch) -- only its handler module.
_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
# Consecutive start failures (exit before the ready message) before the pool gives up.
_MAX_START_FAILURES = 3


def default_workers() -> int:
    """Default worker count: ``min(2, os.cpu_count())``."""
    return max(1, min(2, os.cpu_count() or 1))


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    """A pipe of a worker started with ``subprocess.PIPE`` (always there)."""
    if stream is None:
        raise WorkerStartError("the reward worker was started without a pipe")
    return stream


class WorkerStartError(RuntimeError):
    """Reward worker processes cannot be started (a broken install, not a bad item)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one item.

    ``ok`` is True when the handler returned; ``value`` is then its (JSON-decoded) return
    value. Otherwise ``error`` says why: a timeout, a crash or the handler's exception.
    """

    ok: bool
    value: Any = None
    error: str = ""


class _Worker:
    """One child process and the parent-side state of the item it is working on."""

    def __init__(self, handler: str, memory_mb: int | None, startup_timeout_s: float):
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        if not sys.executable:
            raise WorkerStartError("sys.executable is empty: cannot start reward worker processes")
        cmd = [sys.executable, _WORKER_SCRIPT, handler, str(memory_mb or 0)]
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise WorkerStartError(f"cannot start reward worker {cmd}: {exc}") from exc
        self.stdin, self.stdout, self.stderr = _pipe(self.proc.stdin), _pipe(self.proc.stdout), _pipe(self.proc.stderr)
        self.fd = self.stdout.fileno()
        os.set_blocking(self.fd, False)
        os.set_blocking(self.stderr.fileno(), False)
        self.buffer = bytearray()
        self.ready = False
        self.start_deadline = time.monotonic() + startup_timeout_s
        self.task: int | None = None  # index of the item being worked on
        self.deadline = 0.0

    def send(self, task_id: int, args: Sequence[Any], timeout_s: float) -> None:
        line = json.dumps({"id": task_id, "args": list(args)}).encode() + b"\n"
        self.task = task_id
        self.deadline = time.monotonic() + timeout_s
        self.stdin.write(line)
        self.stdin.flush()

    def read_lines(self) -> tuple[list[bytes], bool]:
        """Lines available now, and whether the worker closed its output (died)."""
        eof = False
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            self.buffer.extend(chunk)
        lines = []
        while True:
            cut = self.buffer.find(b"\n")
            if cut < 0:
                break
            lines.append(bytes(self.buffer[:cut]))
            del self.buffer[: cut + 1]
        if len(self.buffer) > _MAX_LINE_BYTES:
            eof = True
        return lines, eof

    def startup_stderr(self) -> str:
        try:
            data = os.read(self.stderr.fileno(), 65536)
        except OSError:
            data = b""
        return data.decode(errors="replace").strip()[-2000:]

    def exit_description(self) -> str:
        try:
            code = self.proc.wait(timeout=1.0)  # its output closed: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return "worker closed its output"
        if code < 0:
            return f"worker killed by signal {-code}"
        return f"worker exited with code {code}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered
            pass
        for stream in (self.stdin, self.stdout, self.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask the worker to exit (EOF on its stdin), then make sure it is gone."""
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class WorkerPool:
    """A fixed number of worker processes running one handler.

    Args:
        handler: name of a handler known to ``_worker.py`` ("math", "sql").
        workers: number of processes (>= 1).
        memory_mb: address-space limit per worker in MiB; ``None`` or 0 for no limit.
        startup_timeout_s: how long a worker may take to import its handler.
    """

    def __init__(self, handler: str, workers: int, memory_mb: int | None = 2048, startup_timeout_s: float = 120.0):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: expected an integer >= 1, got {workers!r}")
        if memory_mb is not None and (not isinstance(memory_mb, int) or memory_mb < 0):
            raise ValueError(f"memory_mb: expected a non-negative integer or None, got {memory_mb!r}")
        self.handler = handler
        self.size = workers
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def _spawn(self) -> _Worker:
        return _Worker(self.handler, self.memory_mb, self.startup_timeout_s)

    def map(self, items: Sequence[Sequence[Any]], timeout_s: float) -> list[Outcome]:
        """Run the handler on every item (a sequence of JSON-able arguments).

        Returns one :class:`Outcome` per item, in order. Raises :class:`WorkerStartError`
        only when workers cannot be started at all.
        """
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
        if not items:
            return []
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.handler!r} worker pool was shut down")
            return self._map_locked(items, float(timeout_s))

    def _map_locked(self, items: Sequence[Sequence[Any]], timeout_s: float) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(items)
        pending = collections.deque(range(len(items)))
        while len(self._workers) < self.size:
            self._workers.append(self._spawn())
        start_failures = 0
        selector = selectors.DefaultSelector()
        registered: set[int] = set()

        def replace(slot: int) -> None:
            old = self._workers[slot]
            if old.fd in registered:
                selector.unregister(old.fd)
                registered.discard(old.fd)
            old.kill()
            self._workers[slot] = self._spawn()

        try:
            while pending or any(w.task is not None for w in self._workers):
                for slot, worker in enumerate(self._workers):
                    if worker.ready and worker.task is None and pending:
                        index = pending.popleft()
                        try:
                            worker.send(index, items[index], timeout_s)
                        except (OSError, ValueError):  # it died while idle: retry the item elsewhere
                            pending.appendleft(index)
                            worker.task = None
                            replace(slot)
                for worker in self._workers:
                    if worker.fd not in registered:
                        selector.register(worker.fd, selectors.EVENT_READ, worker)
                        registered.add(worker.fd)
                waits = [
                    w.deadline if w.task is not None else w.start_deadline
                    for w in self._workers
                    if w.task is not None or not w.ready
                ]
                wait = max(0.0, min(waits) - time.monotonic()) if waits else 1.0
                dead: set[int] = set()
                for key, _ in selector.select(timeout=min(wait, 1.0)):
                    worker = key.data
                    lines, eof = worker.read_lines()
                    for line in lines:
                        self._handle_line(worker, line, outcomes)
                    if not eof:
                        continue
                    if worker.task is not None:
                        outcomes[worker.task] = Outcome(
                            False, error=f"{worker.exit_description()} while scoring this item"
                        )
                        worker.task = None
                    elif not worker.ready:
                        start_failures += 1
                        if start_failures >= _MAX_START_FAILURES:
                            raise WorkerStartError(
                                f"reward worker {self.handler!r} failed to start {start_failures} times: "
                                f"{worker.exit_description()}; stderr: {worker.startup_stderr() or '(empty)'}"
                            )
                    dead.add(id(worker))
                now = time.monotonic()
                for slot, worker in enumerate(self._workers):
                    if id(worker) in dead:
                        replace(slot)
                    elif worker.task is not None and now > worker.deadline:
                        outcomes[worker.task] = Outcome(False, error=f"timed out after {timeout_s:g} s (worker killed)")
                        worker.task = None
                        replace(slot)
                    elif not worker.ready and now > worker.start_deadline:
                        raise WorkerStartError(
                            f"reward worker {self.handler!r} did not become ready within "
                            f"{self.startup_timeout_s:g} s; stderr: {worker.startup_stderr() or '(empty)'}"
                        )
        finally:
            selector.close()
            # An interrupted map (exception, KeyboardInterrupt) leaves busy workers whose late
            # answers would be read as the next call's: replace them.
            for slot, worker in enumerate(self._workers):
                if worker.task is not None:
                    worker.kill()
                    self._workers[slot] = self._spawn()
        return [o if o is not None else Outcome(False, error="not scored (internal error)") for o in outcomes]

    @staticmethod
    def _handle_line(worker: _Worker, line: bytes, outcomes: list[Outcome | None]) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # not protocol output; the worker's stdout is redirected, so this is noise
        if not isinstance(message, dict):
            return
        if message.get("ready"):
            worker.ready = True
            worker.stderr.close()
            return
        task = message.get("id")
        if task is None or task != worker.task:
            return  # a late answer for an item already given up on
        if message.get("ok"):
            outcomes[task] = Outcome(True, value=message.get("value"))
        else:
            outcomes[task] = Outcome(False, error=str(message.get("error", "unknown error"))[:500])
        worker.task = None

    def close(self) -> None:
        """Stop every worker. Later :meth:`map` calls raise."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        if os.getpid() != self._pid:
            return  # a forked child does not own its parent's workers
        for worker in workers:
            worker.close()


_POOLS: dict[tuple[str, int, int | None], WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(handler: str, workers: int | None = None, memory_mb: int | None = 2048) -> WorkerPool:
    """The shared pool for ``handler``, created on first use and reused afterwards.

    A process that forked after creating a pool gets fresh pools of its own.
    """
    workers = default_workers() if workers is None else workers
    key = (handler, workers, memory_mb)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool._pid != os.getpid() or pool._closed:
            pool = WorkerPool(handler, workers, memory_mb)
            _POOLS[key] = pool
        return pool


def shutdown_pools() -> None:
    """Stop every worker process started by this process (also run at exit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown_pools)

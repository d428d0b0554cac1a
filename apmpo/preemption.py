"""Graceful stops on SIGTERM and SIGINT: finish or abandon the current unit of work, save, exit 75.

Long runs on shared or preemptible machines get a SIGTERM from their scheduler (SLURM,
Kubernetes, a spot-instance notice) some seconds before a SIGKILL, and a SIGINT from a
user's Ctrl-C. ``apmpo train``, ``apmpo study`` and ``apmpo eval`` install a
:class:`StopRequest` for both signals:

- the **first** signal only records the request. Work running in an *abandonable*
  region (:meth:`StopRequest.abandonable`: a training step's sampling and scoring,
  an evaluation, a study's warm-up, none of which has changed anything on disk or in
  the weights yet) is interrupted at once by :class:`StepAbandoned`; anywhere else
  the work finishes its current unit (the training step's updates, logging, periodic
  evaluation and checkpoint). The command then saves what it needs to resume and
  raises :class:`Preempted`, and the CLI exits with status **75** (``EX_TEMPFAIL`` of
  sysexits.h: "temporary failure, try again") and one line saying how to resume.
  75 is distinct from success (0), a crash (1), a configuration error (2), a storage
  failure (74) and the 128 + N of a process killed by signal N, so a job script can
  requeue exactly the runs that stopped cleanly;
- a **second** signal stops at once: the handler raises :class:`HardStop`, whose
  unwinding removes any half-written checkpoint directory, and the CLI exits with
  128 + N (143 for SIGTERM, 130 for SIGINT), the status of a process killed by that
  signal. Nothing on disk is corrupt: checkpoints and whole-file writes are atomic and
  appends are all or nothing (:mod:`apmpo.io`), so the run resumes from its last
  complete checkpoint. The handlers are then back to the defaults, so a third signal
  kills the process outright.

The handlers only set a flag, call the callbacks registered with
:meth:`StopRequest.on_request` (e.g. forwarding the request to worker processes) and
raise; they write their one-line notice with ``os.write`` on file descriptor 2, which,
unlike ``print``, cannot re-enter a buffered stream the interrupted code was writing.
Handlers can only be installed from the main thread; elsewhere :meth:`installed` leaves
the process's handling as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXIT_PREEMPTED", "HardStop", "Preempted", "StepAbandoned", "StopRequest", "signal_name"]

EXIT_PREEMPTED = 75
"""Exit status after a clean stop on a signal (EX_TEMPFAIL): everything needed to resume was saved."""
GRACEFUL_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    """``15`` -> ``"SIGTERM"``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Preempted(Exception):
    """A command stopped cleanly on a signal; the message says what was saved and how to resume."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, message: str, run_dir: str | os.PathLike | None = None):
        super().__init__(message)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        """The run directory to resume (a training run), or None."""


class HardStop(BaseException):
    """A second stop signal: the command stops at once (exit status 128 + the signal's number)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return (
            f"stopped at once by a second {signal_name(self.signum)}: the work in progress is lost; "
            "everything written before is intact"
        )


class StepAbandoned(BaseException):
    """Raised inside an abandonable region by the first stop signal (a BaseException: ``except Exception`` lets it by)."""


class StopRequest:
    """Records stop signals; see the module docstring.

    Args:
        signals: the signals that request a graceful stop (default SIGTERM and SIGINT).
        notice: the line written to stderr on the first signal (``{signal}`` is filled
            in); None writes nothing.
    """

    def __init__(
        self,
        signals: Sequence[int] = GRACEFUL_SIGNALS,
        notice: str | None = "{signal} received: stopping after the current step (send it again to stop at once)",
    ):
        self.signals = tuple(signals)
        self.notice = notice
        self.signum: int | None = None
        """The first stop signal received (None: no stop requested)."""
        self._abandonable = 0
        self._callbacks: list[Callable[[], None]] = []
        self._previous: dict[int, Any] = {}  # the handlers before install(), as signal.signal returned them

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        """The name of the signal that requested the stop ("SIGTERM")."""
        return signal_name(self.signum) if self.signum is not None else "no signal"

    def on_request(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (in the signal handler) when a stop is requested; returns a function removing it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def request(self, signum: int) -> None:
        """What the handler does on a first signal (also callable directly, e.g. by a test)."""
        self.signum = signum
        if self.notice:
            os.write(2, (f"apmpo: {self.notice.format(signal=signal_name(signum))}\n").encode())
        for callback in list(self._callbacks):
            callback()
        if self._abandonable:
            raise StepAbandoned(signum)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            self._restore()
            raise HardStop(signum)
        self.request(signum)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def install(self) -> StopRequest:
        """Handle the stop signals from now on (main thread only; elsewhere nothing changes); returns self."""
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        self._restore()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle the stop signals while the block runs, then restore the previous handlers."""
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """A region whose work the first stop signal abandons at once (:class:`StepAbandoned`).

        Entered with a stop already requested, it raises at once.
        """
        if self.requested:
            raise StepAbandoned(self.signum)
        self._abandonable += 1
        try:
            yield
        finally:
            self._abandonable -= 1

"""``apmpo`` with a slow objective, for tests that must signal a run in the middle of its updates.

Each optimizer update (:func:`apmpo.trainer.step.optimizer_step`, called once per
mini-batch whether or not a row trains) touches the file named by ``$APMPO_TEST_MARKER``
and then sleeps ``$APMPO_TEST_SLEEP`` seconds (default 0.5), so a test can wait for
the marker and know that the run is inside a step's updates for a while. Run as
``python -m tests.trainer.slow_cli train CONFIG ...`` from the repository root.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from apmpo.cli import main
from apmpo.trainer import step


def run() -> int:
    real = step.optimizer_step
    marker = Path(os.environ["APMPO_TEST_MARKER"])
    pause = float(os.environ.get("APMPO_TEST_SLEEP", "0.5"))

    def slow(*args, **kwargs):
        marker.touch()
        time.sleep(pause)
        return real(*args, **kwargs)

    step.optimizer_step = slow
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(run())

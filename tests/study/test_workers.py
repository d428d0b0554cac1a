"""Study workers never outlive the study process (no orphaned training after a kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")

PARENT = textwrap.dedent("""
    import concurrent.futures as cf, multiprocessing, os, sys, time
    from apmpo.study.runner import _die_with_parent

    def sleeper(_):
        print(os.getpid(), flush=True)
        time.sleep(60)

    if __name__ == "__main__":
        pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_die_with_parent, initargs=(os.getpid(),))
        pool.submit(sleeper, 0)
        time.sleep(60)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_worker_dies_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)  # no cleanup code runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker kept running after its study process was killed"
    finally:
        if parent.poll() is None:
            parent.kill()

"""The worker pool's guarantees, driven by the diagnostic handler (misbehaves on request)."""

import os
import threading
import time

import pytest

from apmpo.rewards.pool import WorkerPool, WorkerStartError, default_workers, get_pool


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool("diagnostic", workers=2, memory_mb=512)
    yield pool
    pool.close()


def test_results_in_order(pool):
    outcomes = pool.map([("echo", i) for i in range(40)], timeout_s=5)
    assert [o.value for o in outcomes] == list(range(40))
    assert all(o.ok for o in outcomes)
    assert pool.map([], timeout_s=1) == []


def test_timeouts_crashes_and_errors_stay_with_their_item(pool, tmp_path):
    target = tmp_path / "written.txt"
    items = [
        ("sleep", 30),
        ("echo", "fine"),
        ("segfault", 0),
        ("exit", 3),
        ("raise", "boom"),
        ("alloc", 2048),  # beyond the 512 MiB address-space limit
        ("write", str(target)),
        ("echo", "still fine"),
    ]
    start = time.perf_counter()
    outcomes = pool.map(items, timeout_s=1.0)
    assert time.perf_counter() - start < 10
    sleep, echo, segfault, exit_, raise_, alloc, write, echo2 = outcomes
    assert not sleep.ok and sleep.error == "timed out after 1 s (worker killed)"
    assert echo.ok and echo.value == "fine"
    assert not segfault.ok and "signal 11" in segfault.error
    assert not exit_.ok and "exited with code 3" in exit_.error
    assert not raise_.ok and raise_.error == "ValueError: boom"
    assert not alloc.ok and "MemoryError" in alloc.error
    assert write.ok and "File too large" in write.value  # a worker cannot write data to files
    assert not target.exists() or target.stat().st_size == 0
    assert echo2.ok and echo2.value == "still fine"
    # replaced workers serve the next call
    assert [o.value for o in pool.map([("echo", 1), ("echo", 2), ("echo", 3)], timeout_s=5)] == [1, 2, 3]


def test_workers_are_reused_between_calls(pool):
    first = {o.value for o in pool.map([("pid", 0)] * 8, timeout_s=5)}
    second = {o.value for o in pool.map([("pid", 0)] * 8, timeout_s=5)}
    assert first == second and len(first) <= 2 and os.getpid() not in first


def test_concurrent_callers_get_their_own_results(pool):
    results = {}

    def call(k):
        results[k] = [o.value for o in pool.map([("echo", f"{k}-{i}") for i in range(10)], timeout_s=5)]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {k: [f"{k}-{i}" for i in range(10)] for k in range(4)}


def test_a_worker_that_cannot_start_raises():
    broken = WorkerPool("no-such-handler", workers=1)
    with pytest.raises(WorkerStartError, match="failed to start 3 times.*usage"):
        broken.map([("echo", 1)], timeout_s=1)
    broken.close()


def test_close_stops_the_processes():
    pool = WorkerPool("diagnostic", workers=2)
    pids = {o.value for o in pool.map([("pid", 0)] * 4, timeout_s=5)}
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.map([("echo", 1)], timeout_s=1)


def test_argument_checks_and_shared_pools():
    with pytest.raises(ValueError, match="workers: expected an integer >= 1"):
        WorkerPool("diagnostic", workers=0)
    with pytest.raises(ValueError, match="timeout_s: expected a positive number"):
        WorkerPool("diagnostic", workers=1).map([("echo", 1)], timeout_s=0)
    assert 1 <= default_workers() <= 2
    assert get_pool("diagnostic", 1, 256) is get_pool("diagnostic", 1, 256)
    assert get_pool("diagnostic", 1, 256) is not get_pool("diagnostic", 2, 256)


ORPHAN_SCRIPT = """
import importlib.util, os, sys, threading, time
spec = importlib.util.spec_from_file_location("pool", sys.argv[1])  # pool.py alone: no torch import
module = sys.modules["pool"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
pool = module.WorkerPool("diagnostic", workers=1)
print(pool.map([("pid", 0)], timeout_s=5)[0].value, flush=True)
threading.Thread(target=pool.map, args=([("sleep", 60)], 120), daemon=True).start()
time.sleep(0.5)
os._exit(0)  # dies without running atexit: the busy worker must notice on its own
"""


def test_busy_workers_exit_when_their_parent_dies():
    import subprocess
    import sys

    from apmpo.rewards import pool as pool_module

    out = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT, pool_module.__file__], capture_output=True, text=True, timeout=120
    )
    worker = int(out.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, 9)
    pytest.fail(f"worker {worker} outlived its parent by 10 s")

"""apmpo.preemption: the first stop signal requests, a second stops at once, abandonable regions are interrupted."""

from __future__ import annotations

import signal
import threading

import pytest

from apmpo.preemption import EXIT_PREEMPTED, HardStop, Preempted, StepAbandoned, StopRequest

pytestmark = pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")


def test_first_signal_requests_second_stops_at_once_third_is_default(capfd):
    before = signal.getsignal(signal.SIGTERM)
    calls = []
    stop = StopRequest()
    stop.on_request(lambda: calls.append("forwarded"))
    with stop.installed():
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM" and calls == ["forwarded"]
        assert "apmpo: SIGTERM received: stopping after the current step" in capfd.readouterr().err
        with pytest.raises(HardStop) as caught:
            signal.raise_signal(signal.SIGINT)
        assert caught.value.exit_code == 130 and "second SIGINT" in str(caught.value)
        assert signal.getsignal(signal.SIGTERM) is before  # a third signal gets the default action
    assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert Preempted("x").exit_code == EXIT_PREEMPTED == 75


def test_abandonable_regions_are_interrupted_at_once_elsewhere_only_flagged():
    stop = StopRequest(notice=None)
    with stop.installed():
        reached = []
        with pytest.raises(StepAbandoned):
            with stop.abandonable():
                signal.raise_signal(signal.SIGTERM)
                reached.append("after the signal")  # never: the region is abandoned at once
        assert stop.requested and reached == []
        with pytest.raises(StepAbandoned):  # entering a region after the request abandons it at once
            with stop.abandonable():
                reached.append("inside")
        assert reached == []
    outside = StopRequest(notice=None)
    with outside.installed():
        signal.raise_signal(signal.SIGTERM)
        reached.append("went on")
    assert outside.requested and reached == ["went on"]


def test_handlers_are_restored_and_only_installed_in_the_main_thread():
    previous = signal.getsignal(signal.SIGTERM)
    stop = StopRequest(notice=None)
    with stop.installed():
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert signal.getsignal(signal.SIGTERM) is previous

    seen = []

    def worker():
        with StopRequest().installed():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [previous]
    removed = StopRequest(notice=None)
    forget = removed.on_request(lambda: seen.append("called"))
    forget()
    removed.request(signal.SIGTERM)
    assert seen == [previous]

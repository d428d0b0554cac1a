"""apmpo.io: atomic writes leave the old file or the new one, never a partial file, with open()'s mode;
appends are all or nothing; a full disk or a failing device is reported naming the path and the space needed."""

import errno
import json
import os
import shutil
import stat

import pytest

import apmpo.io as io_module
from apmpo.io import (
    StorageError,
    append_text,
    atomic_savefig,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    storage_failure,
)
from tests.faults import FailingOs


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_text_json_and_mode_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")
        assert target.read_text(encoding="utf-8") == "héllo\n" and _mode(target) == 0o644
        atomic_write_json(tmp_path / "b.json", {"x": [1, 2], "y": "é"})
        assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8")) == {"x": [1, 2], "y": "é"}
        os.umask(0o077)
        assert _mode(atomic_write_text(tmp_path / "c.txt", "x")) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("error, raised, words", [
    (RuntimeError("killed mid-write"), RuntimeError, "killed mid-write"),
    (OSError(errno.ENOSPC, "No space left on device"), StorageError, "state.json failed: the disk is full (ENOSPC"),
], ids=["crash", "full disk"])
def test_failure_keeps_old_content_and_leaves_no_temporary(tmp_path, error, raised, words):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def broken(tmp):
        with open(tmp, "w") as handle:
            handle.write("partial")
        raise error

    with pytest.raises(raised) as caught:
        atomic_write(target, broken)
    assert words in str(caught.value)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_unserialisable_json_is_refused_before_touching_the_file(tmp_path):
    target = tmp_path / "s.json"
    atomic_write_text(target, "{}")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "{}" and len(list(tmp_path.iterdir())) == 1


def test_savefig_writes_a_png(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = atomic_savefig(fig, tmp_path / "curve.png")
    plt.close(fig)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]


# --------------------------------------------------------------------------- full disks and failing devices


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full (ENOSPC"),
                                         (errno.EIO, "the device reported an I/O error (EIO")])
@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_failed_append_is_cut_back_and_named(tmp_path, monkeypatch, code, words, call):
    log = tmp_path / "metrics.jsonl"
    append_text(log, '{"step": 1}\n')
    monkeypatch.setattr(io_module, "os", FailingOs("metrics.jsonl", code, call=call))
    with pytest.raises(StorageError) as caught:
        append_text(log, '{"step": 2, "loss": 0.5}\n', fsync=True)
    monkeypatch.undo()
    assert log.read_text() == '{"step": 1}\n'  # the torn half-line is gone; earlier lines are intact
    text = str(caught.value)
    assert f"appending to {log} failed: {words}" in text and "it needs about 25 B" in text and " free on that" in text
    assert "The lines written before are intact" in text and caught.value.exit_code == 74
    assert isinstance(caught.value, OSError) and caught.value.errno == code
    append_text(log, '{"step": 2}\n')
    assert log.read_text().splitlines() == ['{"step": 1}', '{"step": 2}']


def test_an_append_interrupted_by_any_exception_is_cut_back(tmp_path, monkeypatch):
    log = tmp_path / "records.jsonl"
    append_text(log, "a\n")

    class Interrupted(BaseException):
        pass

    class Torn(FailingOs):
        def write(self, fd, data):
            os.write(fd, bytes(data[:3]))
            raise Interrupted  # e.g. a signal handler raising in the middle of the write

    monkeypatch.setattr(io_module, "os", Torn())
    with pytest.raises(Interrupted):
        append_text(log, "bbbbbb\n")
    monkeypatch.undo()
    assert log.read_text() == "a\n"


def test_what_counts_as_a_storage_failure(tmp_path, monkeypatch):
    class SafetensorError(Exception):
        pass

    found = storage_failure(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
                            tmp_path / "model.safetensors", 2048)
    assert found.errno == errno.ENOSPC and "it needs about 2.0 KiB" in str(found)
    assert storage_failure(RuntimeError("[Errno 5] Input/output error"), tmp_path, None).errno == errno.EIO
    assert storage_failure(ValueError("a bug"), tmp_path, None) is None
    assert storage_failure(OSError(errno.EACCES, "Permission denied"), tmp_path, 10) is None
    assert storage_failure(KeyboardInterrupt(), tmp_path, 10) is None
    # torch.save says only "unexpected pos": a failed write while less space is free than it needs is a full disk
    unexplained = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert storage_failure(unexplained, tmp_path, 10) is None
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1000, 900, 100))
    found = storage_failure(unexplained, tmp_path / "sub" / "trainer_state.pt", 10_000)
    assert found.errno == errno.ENOSPC and "it needs about 9.8 KiB; 100 B free" in str(found)

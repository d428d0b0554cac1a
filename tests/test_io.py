"""apmpo.io: atomic writes leave the old file or the new one, never a partial file, with open()'s mode."""

import json
import os
import stat

import pytest

from apmpo.io import atomic_savefig, atomic_write, atomic_write_json, atomic_write_text


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


def test_failure_keeps_old_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def broken(tmp):
        with open(tmp, "w") as handle:
            handle.write("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(target, broken)
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

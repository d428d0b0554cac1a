"""Shared fixtures: a tiny random Qwen2-VL with its in-process processor, geometry images and files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def vlm():
    """(model, processor): the default tiny random Qwen2-VL (apmpo.multimodal.tiny_vlm)."""
    from apmpo.multimodal import tiny_vlm

    return tiny_vlm(seed=0)


def png_bytes(size=(64, 48), color="white") -> bytes:
    """A small PNG image, encoded."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_intergps(root: Path, split: str, problems: list[dict]) -> Path:
    """An Inter-GPS Geometry3K split: <root>/<split>/<id>/data.json + img_diagram.png."""
    for problem in problems:
        folder = root / split / str(problem["id"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data.json").write_text(json.dumps(problem), encoding="utf-8")
        (folder / "img_diagram.png").write_bytes(png_bytes())
    return root

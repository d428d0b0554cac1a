"""Image columns: every accepted form resolves and opens; every bad image is an error naming the row."""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from apmpo.multimodal.images import (
    IMAGES_KEY,
    ImageError,
    attach_images,
    find_image_column,
    open_image,
    resolve_image,
)

from .conftest import png_bytes


def test_every_accepted_form_opens_as_rgb(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png_bytes((30, 20), "red"))
    data = png_bytes((10, 12), "blue")
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    rows = [
        {"prompt": "p", "answer": "A", "images": ["pics/a.png"]},          # relative to the data file
        {"prompt": "p", "answer": "A", "images": data},                    # raw bytes, not in a list
        {"prompt": "p", "answer": "A", "images": [{"bytes": data, "path": "ignored.png"}]},  # HF datasets struct
        {"prompt": "p", "answer": "A", "images": [{"bytes": None, "path": "pics/a.png"}]},
        {"prompt": "p", "answer": "A", "images": [uri, Image.new("L", (5, 5))]},
    ]
    prepared = attach_images(rows, source=tmp_path / "data.jsonl")
    assert prepared.image_column == "images" and not prepared.skipped
    sizes = [[open_image(ref).size for ref in row[IMAGES_KEY]] for row in prepared.examples]
    assert sizes == [[(30, 20)], [(10, 12)], [(10, 12)], [(30, 20)], [(10, 12), (5, 5)]]
    assert all(open_image(ref).mode == "RGB" for row in prepared.examples for ref in row[IMAGES_KEY])
    assert prepared.examples[0][IMAGES_KEY] == [str((tmp_path / "pics" / "a.png").resolve())]
    assert rows[0]["images"] == ["pics/a.png"]  # the caller's rows are not modified
    again = attach_images(prepared.examples, source="/elsewhere/data.jsonl")  # idempotent: paths are absolute now
    assert again.examples[0][IMAGES_KEY] == prepared.examples[0][IMAGES_KEY]


def test_column_detection_and_explicit_column(tmp_path):
    assert find_image_column(["prompt", "image", "images"]) == "images"
    assert find_image_column(["prompt", "image_path"]) == "image_path"
    assert find_image_column(["prompt", "answer"]) is None
    with pytest.raises(ImageError, match="no image column 'pic'; available columns: prompt, answer"):
        find_image_column(["prompt", "answer"], "pic")
    (tmp_path / "a.png").write_bytes(png_bytes())
    prepared = attach_images([{"prompt": "p", "pic": "a.png"}], image_column="pic", image_root=tmp_path)
    assert "pic" not in prepared.examples[0] and len(prepared.examples[0][IMAGES_KEY]) == 1
    text_only = attach_images([{"prompt": "p", "answer": "1"}])
    assert text_only.image_column is None and text_only.examples == [{"prompt": "p", "answer": "1"}]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (["missing.png"], r"data.jsonl: data.train example 2, field 'images': image file .*missing.png does not exist"),
        (["broken.png"], r"example 2, field 'images': image .*broken.png cannot be decoded \(UnidentifiedImageError"),
        ([b"not an image"], r"example 2, field 'images': image <12 bytes> cannot be decoded"),
        ([42], r"example 2, field 'images': cannot read an image from a int"),
        ([""], r"example 2, field 'images': an empty image path"),
        (["data:image/png;base64,@@@"], r"example 2, field 'images': a data URI with invalid base64"),
        ([{"path": None, "bytes": None}], r"example 2, field 'images': an image mapping needs 'bytes' or 'path'"),
        (["a.png", "missing.png"], r"example 2, field 'images': image 2 of 2: image file .*missing.png does not exist"),
        (["sub"], r"example 2, field 'images': image path .*sub is not a file"),
    ],
)
def test_bad_images_name_the_row_and_the_problem(tmp_path, cell, message):
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "broken.png").write_text("garbage")
    (tmp_path / "sub").mkdir()
    rows = [{"prompt": "ok", "images": ["a.png"]}, {"prompt": "bad", "images": cell}]
    with pytest.raises(ImageError, match=message + r".*on_bad_row='skip' skips and counts such rows"):
        attach_images(rows, source=tmp_path / "data.jsonl", where="data.train example")


def test_skip_mode_counts_bad_rows_and_fails_when_nothing_is_left(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    rows = [{"prompt": str(i), "images": ["a.png" if i % 2 else "gone.png"]} for i in range(5)]
    prepared = attach_images(rows, source=tmp_path / "d.jsonl", on_bad_row="skip", where="row")
    assert [r["prompt"] for r in prepared.examples] == ["1", "3"]
    assert [name for name, _ in prepared.skipped] == ["row 1", "row 3", "row 5"]
    assert "does not exist" in prepared.skipped[0][1]
    assert "3 rows skipped for bad images (first: row 1: image file" in prepared.summary()
    with pytest.raises(ImageError, match="no usable examples: every row has a bad image"):
        attach_images(rows[::2], source=tmp_path / "d.jsonl", on_bad_row="skip")


def test_null_cells_and_rows_without_the_column(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    detected = attach_images([{"prompt": "a", "images": ["a.png"]}, {"prompt": "b", "images": None}], image_root=tmp_path)
    assert detected.examples[1][IMAGES_KEY] == []  # a text-only row among image rows
    with pytest.raises(ImageError, match="example 2, field 'images': the image is null"):
        attach_images([{"prompt": "a", "images": ["a.png"]}, {"prompt": "b", "images": None}],
                      image_column="images", image_root=tmp_path)
    with pytest.raises(ImageError, match="example 2, field 'images': no 'images' column in this row"):
        attach_images([{"prompt": "a", "images": ["a.png"]}, {"prompt": "b"}], image_root=tmp_path)


def test_resolve_image_refuses_unknown_kinds():
    with pytest.raises(ImageError, match="the image is null"):
        resolve_image(None)
    with pytest.raises(ImageError, match="a data URI must be"):
        resolve_image("data:image/png,plain")
    assert resolve_image(bytearray(b"xy")) == b"xy"

"""Synthetic geometry problems and the Geometry3K loader (Inter-GPS folders, converted files)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from apmpo.multimodal import (
    GEOMETRY_KINDS,
    Geometry3KError,
    convert_geometry3k,
    load_geometry3k,
    make_geometry,
    open_image,
    write_geometry_dataset,
)
from apmpo.tasks import BUILTIN_TASKS, make_task_examples
from tests.helpers import write_jsonl

from .conftest import png_bytes, write_intergps


def _expected(kind, values):
    """The answer recomputed from the numbers drawn in the diagram."""
    if kind == "triangle_angle":
        return 180 - values[0] - values[1]
    if kind == "isosceles_angle":
        return (180 - values[0]) // 2
    if kind == "supplementary_angle":
        return 180 - values[0]
    if kind == "right_triangle":
        return round((values[0] ** 2 + values[1] ** 2) ** 0.5)
    if kind == "rectangle_area":
        return values[0] * values[1]
    if kind == "rectangle_perimeter":
        return 2 * (values[0] + values[1])
    if kind == "circle_diameter":
        return 2 * values[0]
    raise AssertionError(kind)


def test_synthetic_answers_are_right_and_the_letter_points_at_them():
    examples = make_geometry("train", 60, seed=1)
    assert {e["kind"] for e in examples} == set(GEOMETRY_KINDS)
    for e in examples:
        figure = e["images"][0]
        assert int(e["answer_value"]) == _expected(figure.kind, figure.values)
        assert len(set(e["choices"])) == 4 and e["choices"]["ABCD".index(e["answer"])] == e["answer_value"]
        assert all(int(c) > 0 for c in e["choices"])
        assert str(figure.values[0]) not in e["prompt"].split("\n")[0]  # the numbers are only in the picture
        assert e["prompt"].endswith("Answer with the letter of the correct choice.")
    assert make_geometry("train", 60, seed=1) == examples  # deterministic
    assert make_geometry("train", 60, seed=2) != examples


def test_synthetic_splits_never_share_a_problem():
    key = lambda e: (e["images"][0].kind, e["images"][0].values)
    train = {key(e) for e in make_geometry("train", 400, seed=0)}
    evals = [key(e) for e in make_geometry("eval", 100, seed=0)]
    assert len(set(evals)) == 100 and not train & set(evals)


def test_synthetic_images_are_drawn_at_the_requested_size():
    example = make_geometry("eval", 1, seed=0, kinds="right_triangle", image_size=96)[0]
    data = example["images"][0].png_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (96, 96) and image.format == "PNG"
    pixels = open_image(example["images"][0])
    assert pixels.mode == "RGB" and pixels.getextrema() != ((255, 255),) * 3  # not blank
    other = make_geometry("eval", 1, seed=0, kinds="circle_diameter", image_size=96)[0]
    assert other["images"][0].png_bytes() != data


@pytest.mark.parametrize(("options", "message"), [
    ({"kinds": "hexagon"}, "kinds: unknown hexagon"),
    ({"image_size": 20}, "image_size must be an integer >= 56"),
    ({"eval_fraction": 1.5}, "eval_fraction"),
])
def test_synthetic_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        make_geometry("train", 2, **options)


def test_geometry_tasks_are_registered():
    assert BUILTIN_TASKS["geometry"].default_reward == "exact"
    examples = make_task_examples("geometry", "eval", 3, seed=0, kinds="circle_diameter")
    assert [e["kind"] for e in examples] == ["circle_diameter"] * 3
    with pytest.raises(ValueError, match="task 'geometry3k' needs data.task.path"):
        make_task_examples("geometry3k", "train", 3)


def _intergps_problem(pid, answer="B", **overrides):
    problem = {"id": pid, "problem_text": f"Find x in figure {pid}.", "choices": ["3", "5", "7", "9"], "answer": answer}
    problem.update(overrides)
    return problem


def test_intergps_folder(tmp_path):
    write_intergps(tmp_path, "train", [_intergps_problem(p) for p in (10, 2, 33)])
    write_intergps(tmp_path, "test", [_intergps_problem(2401, answer="D")])
    train = load_geometry3k(tmp_path, "train")
    assert [e["id"] for e in train] == [2, 10, 33]  # numeric folder order
    first = train[0]
    assert first["prompt"] == ("Find x in figure 2.\nChoices:\nA. 3\nB. 5\nC. 7\nD. 9\n"
                               "Answer with the letter of the correct choice.")
    assert (first["answer"], first["answer_value"], first["task"]) == ("B", "5", "geometry3k")
    assert first["images"] == [str((tmp_path / "train" / "2" / "img_diagram.png").resolve())]
    assert load_geometry3k(tmp_path / "train", answer="value", instruction="")[0]["answer"] == "5"
    assert len(load_geometry3k(tmp_path, "train", limit=2)) == 2
    task = make_task_examples("geometry3k", "eval", 10, path=str(tmp_path))
    assert [(e["id"], e["answer"]) for e in task] == [(2401, "D")]


def test_converted_parquet_with_image_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = {
        "images": [[{"bytes": png_bytes(), "path": None}], [{"bytes": png_bytes((40, 40)), "path": None}]],
        "problem": ["<image>Find y.", "<image>Find the area."],
        "answer": ["7", "12"],                      # the value of the correct choice, as in hiyouga/geometry3k
        "id": [1, 2],
        "choices": [["1", "3", "7", "9"], ["12", "24", "6", "3"]],
        "ground_truth": ["C", "A"],
    }
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table(rows), path)
    examples = load_geometry3k(path)
    assert [(e["answer"], e["answer_value"]) for e in examples] == [("C", "7"), ("A", "12")]
    assert examples[0]["prompt"].startswith("<image>Find y.\nChoices:\nA. 1\n")
    assert isinstance(examples[0]["images"][0], bytes)
    out = tmp_path / "conv" / "train.jsonl"
    assert convert_geometry3k(path, out) == 2
    converted = [json.loads(line) for line in out.read_text().splitlines()]
    assert converted[1]["answer"] == "A" and open_image(converted[1]["images"][0]).size == (40, 40)


def test_synthetic_files_round_trip_through_the_loader(tmp_path):
    path = write_geometry_dataset(tmp_path / "geo", "eval", 4, seed=0, image_size=64)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["problem"].startswith("<image>") and (tmp_path / "geo" / rows[0]["images"][0]).is_file()
    loaded = load_geometry3k(path, instruction="")
    assert [e["answer"] for e in loaded] == [r["answer"] for r in rows]
    assert loaded[0]["prompt"] == rows[0]["problem"]  # choices already listed: not repeated


@pytest.mark.parametrize(("problem", "message"), [
    (_intergps_problem(5, answer="E"), r"5/data.json: the answer 'E' is neither a letter nor one of the choices"),
    (_intergps_problem(5, choices=None), r"5/data.json: choices must be a list"),
    (_intergps_problem(5, problem_text=""), r"5/data.json: no problem text"),
])
def test_intergps_bad_rows(tmp_path, problem, message):
    write_intergps(tmp_path, "train", [_intergps_problem(1), problem])
    with pytest.raises(Geometry3KError, match=message + r".*on_bad_row='skip'"):
        load_geometry3k(tmp_path, "train")
    assert [e["id"] for e in load_geometry3k(tmp_path, "train", on_bad_row="skip")] == [1]


def test_missing_images_and_layout_errors(tmp_path):
    write_intergps(tmp_path, "train", [_intergps_problem(1), _intergps_problem(2)])
    (tmp_path / "train" / "2" / "img_diagram.png").unlink()
    with pytest.raises(Geometry3KError, match=r"2/data.json: image: image file .*img_diagram.png does not exist"):
        load_geometry3k(tmp_path, "train")
    with pytest.raises(Geometry3KError, match="an Inter-GPS root folder; name the split"):
        load_geometry3k(tmp_path)
    with pytest.raises(Geometry3KError, match="no val/ folder"):
        load_geometry3k(tmp_path, "validation")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_geometry3k(tmp_path / "nope")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "<image>Find x.", "answer": "B", "choices": ["1", "2"],
                                                "images": ["missing.png"]}])
    with pytest.raises(Geometry3KError, match=r"bad.jsonl: row 1: image: image file .*missing.png does not exist"):
        load_geometry3k(bad)
    with pytest.raises(Geometry3KError, match="no usable Geometry3K problems; 1 rows skipped"):
        load_geometry3k(bad, on_bad_row="skip")

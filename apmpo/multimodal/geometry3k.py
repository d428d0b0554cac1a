"""Geometry3K (Lu et al., Inter-GPS, ACL 2021) in the layouts RL papers train on.

:func:`load_geometry3k` reads

- the **Inter-GPS folder**: ``<root>/{train,val,test}/<id>/data.json`` beside
  ``img_diagram.png``; ``data.json`` holds ``problem_text`` (or ``compact_text``),
  ``choices`` (four strings) and ``answer`` (the letter); ``root`` may also be one
  split folder;
- the **converted file** (Parquet / JSONL / JSON, e.g. ``hiyouga/geometry3k`` as used by
  EasyR1 and verl's ``geo3k`` example, or :func:`apmpo.multimodal.write_geometry_dataset`):
  ``problem`` (with ``<image>`` markers), ``images`` (a list of ``{bytes, path}`` or
  paths), ``answer`` (the value of the correct choice, or its letter), and optionally
  ``choices`` and ``ground_truth`` (the letter).

Every example becomes ``{"prompt", "answer", "answer_value", "choices", "images", "id",
"task"}``: the prompt is the problem text followed by the lettered choices (unless the
text already lists them) and ``instruction``; ``answer`` is the letter of the correct
choice (``answer="letter"``, scored by ``exact_match``'s choice mode) or its value
(``answer="value"``, for ``math_accuracy`` with a ``\\boxed{}`` instruction). Images
stay references (paths or bytes); :func:`apmpo.multimodal.images.attach_images` checks
them. A bad row (no choices, an answer that is not among them, a missing image) is an
error naming the file and the row, or is skipped and counted with ``on_bad_row="skip"``.

``GEOMETRY3K_TASK`` registers the loader as the built-in task ``geometry3k`` (option
``path``: the folder or a train file; ``eval_path`` for a file layout; ``eval_split``:
"test" or "val"), so that a config can say ``data.train: geometry3k``. As a task, ``n``
is a cap: the first ``n`` problems of the split in file order (``train_size`` /
``eval_size``); the seed is not used.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from apmpo.data.loaders import load_examples
from apmpo.io import atomic_write_text

from .images import ImageError, check_image, resolve_image
from .synthetic import CHOICE_LETTERS, DEFAULT_INSTRUCTION, format_choices

__all__ = ["GEOMETRY3K_SPLITS", "Geometry3KError", "convert_geometry3k", "load_geometry3k", "make_geometry3k"]

GEOMETRY3K_SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test", "eval": "test"}
"""Accepted split names -> Inter-GPS folder names ("eval" means "test")."""
_ANSWER_MODES = ("letter", "value")
_LETTER = re.compile(r"^\(?\s*([A-Da-d])\s*\)?\.?$")


class Geometry3KError(ValueError):
    """A Geometry3K file or row that cannot be used; the message names it."""


class _Bad(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _letter(value: Any) -> str | None:
    match = _LETTER.match(str(value).strip()) if isinstance(value, str) else None
    return match.group(1).upper() if match else None


def _example(
    text: Any,
    choices: Any,
    answer: Any,
    letter_hint: Any,
    images: list[Any],
    row_id: Any,
    answer_mode: str,
    instruction: str,
) -> dict[str, Any]:
    """One canonical example; raises _Bad with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise _Bad("no problem text")
    if (
        not isinstance(choices, (list, tuple))
        or len(choices) < 2
        or not all(isinstance(c, (str, int, float)) for c in choices)
    ):
        raise _Bad(f"choices must be a list of at least two values, got {choices!r:.80}")
    choices = [str(c).strip() for c in choices]
    if len(choices) > len(CHOICE_LETTERS):
        raise _Bad(f"{len(choices)} choices; at most {len(CHOICE_LETTERS)} are supported")
    letter = _letter(letter_hint) or _letter(answer)
    if letter is None and answer is not None and str(answer).strip() in choices:
        letter = CHOICE_LETTERS[choices.index(str(answer).strip())]
    if letter is None:
        raise _Bad(f"the answer {answer!r:.60} is neither a letter nor one of the choices {choices}")
    position = CHOICE_LETTERS.index(letter)
    if position >= len(choices):
        raise _Bad(f"answer letter {letter} but only {len(choices)} choices")
    prompt = text.strip()
    if "choices" not in prompt.lower():
        prompt += "\n" + format_choices(choices)
    if instruction:
        prompt += "\n" + instruction
    value = choices[position]
    return {
        "prompt": prompt,
        "answer": letter if answer_mode == "letter" else value,
        "answer_value": value,
        "choices": choices,
        "images": images,
        "id": row_id,
        "task": "geometry3k",
    }


def _intergps_folder(root: Path, split: str | None) -> Path:
    if any((child / "data.json").is_file() for child in root.iterdir() if child.is_dir()):
        return root  # a split folder itself
    if split is None:
        raise Geometry3KError(f"{root}: an Inter-GPS root folder; name the split (train, val or test)")
    if split not in GEOMETRY3K_SPLITS:
        raise Geometry3KError(f"unknown split {split!r}; known: {', '.join(GEOMETRY3K_SPLITS)}")
    folder = root / GEOMETRY3K_SPLITS[split]
    if not folder.is_dir():
        raise Geometry3KError(
            f"{root}: no {GEOMETRY3K_SPLITS[split]}/ folder (expected the Inter-GPS layout "
            "<root>/{train,val,test}/<id>/data.json + img_diagram.png)"
        )
    return folder


def _numeric_key(path: Path) -> tuple[int, str]:
    return (int(path.name), path.name) if path.name.isdigit() else (1 << 62, path.name)


def _read_intergps(folder: Path):
    """(where, raw row or _Bad) per problem folder, in numeric order."""
    for problem in sorted((p for p in folder.iterdir() if p.is_dir()), key=_numeric_key):
        where = f"{problem.name}/data.json"
        try:
            data = json.loads((problem / "data.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            yield where, _Bad("missing data.json")
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            yield where, _Bad(f"malformed JSON ({exc})")
            continue
        if not isinstance(data, dict):
            yield where, _Bad("expected a JSON object")
            continue
        image = problem / "img_diagram.png"
        yield (
            where,
            {
                "text": data.get("problem_text") or data.get("compact_text"),
                "choices": data.get("choices") or data.get("compact_choices"),
                "answer": data.get("answer"),
                "letter": None,
                "images": [str(image)],
                "id": data.get("id", problem.name),
            },
        )


def _read_file(path: Path, on_bad_row: str):
    """(where, raw row) of a converted file, read by :func:`apmpo.data.load_examples` (rows in file order)."""
    if path.suffix.lower() not in (".parquet", ".jsonl", ".json"):
        raise Geometry3KError(f"{path}: unsupported file type {path.suffix!r}; use .parquet, .jsonl or .json")
    for index, row in enumerate(load_examples(path, answer_marker=None, on_bad_row=on_bad_row), start=1):
        images = row.get("images", row.get("image"))
        images = list(images) if isinstance(images, (list, tuple)) else ([] if images is None else [images])
        yield (
            f"row {index}",
            {
                "text": row["prompt"],
                "choices": row.get("choices"),
                "answer": row["answer"],
                "letter": row.get("ground_truth"),
                "images": images,
                "id": row.get("id"),
            },
        )


def load_geometry3k(
    path: str | os.PathLike,
    split: str | None = None,
    *,
    answer: str = "letter",
    instruction: str = DEFAULT_INSTRUCTION,
    limit: int | None = None,
    on_bad_row: str = "error",
    check_images: bool = True,
) -> list[dict[str, Any]]:
    """Geometry3K examples from an Inter-GPS folder or a converted file (see the module docstring).

    Args:
        path: the Inter-GPS root (with ``split``) or split folder, or a .parquet /
            .jsonl / .json file.
        split: "train", "val" ("validation") or "test" ("eval") for an Inter-GPS root.
        answer: "letter" (the correct choice's letter) or "value" (its text).
        instruction: the answer-format sentence after the choices ("" for none).
        limit: keep the first ``limit`` problems.
        on_bad_row: "error" or "skip" (skipped rows are counted in the error when
            nothing is left).
        check_images: open every image now (relative file paths resolve against the
            file's folder).
    """
    if answer not in _ANSWER_MODES:
        raise ValueError(f"answer must be one of {_ANSWER_MODES}, got {answer!r}")
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    rows = _read_intergps(_intergps_folder(root, split)) if root.is_dir() else _read_file(root, on_bad_row)
    base = root if root.is_dir() else root.parent
    examples, skipped = [], []
    for where, raw in rows:
        try:
            if isinstance(raw, _Bad):
                raise raw
            example = _example(
                raw["text"], raw["choices"], raw["answer"], raw["letter"], raw["images"], raw["id"], answer, instruction
            )
            if not example["images"]:
                raise _Bad("no image")
            try:
                example["images"] = [resolve_image(value, base) for value in example["images"]]
                for ref in example["images"] if check_images else ():
                    check_image(ref)
            except ImageError as exc:
                raise _Bad(f"image: {exc}") from None
        except _Bad as exc:
            if on_bad_row == "error":
                raise Geometry3KError(
                    f"{root}: {where}: {exc.reason} (on_bad_row='skip' skips and counts such rows)"
                ) from None
            skipped.append(f"{where}: {exc.reason}")
            continue
        examples.append(example)
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        detail = f"; {len(skipped)} rows skipped, e.g. {skipped[0]}" if skipped else ""
        raise Geometry3KError(f"{root}: no usable Geometry3K problems{detail}")
    return examples


def make_geometry3k(
    split: str,
    n: int,
    seed: int = 0,
    *,
    path: str | None = None,
    eval_path: str | None = None,
    eval_split: str = "test",
    answer: str = "letter",
    instruction: str = DEFAULT_INSTRUCTION,
    on_bad_row: str = "error",
) -> list[dict[str, Any]]:
    """The built-in task ``geometry3k``: the first ``n`` problems of the train or eval split (``seed`` is unused)."""
    if path is None:
        raise ValueError(
            "task 'geometry3k' needs data.task.path: the Inter-GPS Geometry3K folder "
            "(<root>/{train,val,test}/<id>/data.json) or a converted train file (then also eval_path)"
        )
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if eval_split not in ("test", "val"):
        raise ValueError(f"eval_split must be 'test' or 'val', got {eval_split!r}")
    source = Path(path).expanduser()
    if split == "eval" and not source.is_dir():
        if eval_path is None:
            raise ValueError(
                "task 'geometry3k': with a file as data.task.path, give the held-out file as data.task.eval_path"
            )
        source = Path(eval_path).expanduser()
    folder_split = None if not source.is_dir() else ("train" if split == "train" else eval_split)
    return load_geometry3k(source, folder_split, answer=answer, instruction=instruction, limit=n, on_bad_row=on_bad_row)


def convert_geometry3k(
    path: str | os.PathLike, out_file: str | os.PathLike, split: str | None = None, **options: Any
) -> int:
    """Write a split as JSONL (``prompt``, ``answer``, ``answer_value``, ``choices``, ``images`` as absolute paths,
    ``id``) for ``apmpo eval --data``; images given as bytes are written beside it. Returns the row count."""
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_dir = out.parent / f"{out.stem}_images"
    lines = []
    for index, example in enumerate(load_geometry3k(path, split, **options)):
        refs = []
        for k, ref in enumerate(example["images"]):
            if isinstance(ref, bytes):
                image_dir.mkdir(exist_ok=True)
                target = image_dir / f"{index:05d}-{k}.png"
                target.write_bytes(ref)
                ref = str(target.resolve())
            refs.append(ref)
        lines.append(json.dumps({**example, "images": refs}, ensure_ascii=False))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines)

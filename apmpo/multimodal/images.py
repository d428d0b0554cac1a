"""Image references in example rows: find the image column, resolve, check and open images.

A vision-language example carries its images in one column (``images`` by default; the
first of :data:`IMAGE_CANDIDATES` present when none is named). A cell holds one image
or a list of them, each given as

- a path (``str`` or ``os.PathLike``), relative to ``image_root`` or else to the folder
  of the data file; ``~`` is expanded;
- a ``data:image/...;base64,...`` URI (images embedded in JSON);
- raw encoded bytes (PNG, JPEG, ...);
- a mapping ``{"bytes": ..., "path": ...}``, the Hugging Face ``datasets`` image
  feature as stored in Parquet (bytes win; the path is used when bytes are null);
- a ``PIL.Image.Image``;
- an object with a ``load_image()`` method returning a ``PIL.Image.Image`` (the
  synthetic geometry figures, drawn on first use).

:func:`attach_images` rewrites every row's cell into a list of such references under
``"images"`` (absolute paths, bytes, PIL images, drawables), after checking that each
one exists and decodes; a bad one raises :class:`ImageError` naming the row and the
problem, or with ``on_bad_row="skip"`` the row is left out and counted. It is
idempotent, so rows can pass through it twice (trainer, then evaluation).
:func:`open_image` turns a reference into an RGB ``PIL`` image for the processor.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "IMAGES_KEY",
    "IMAGE_CANDIDATES",
    "ImageError",
    "PreparedExamples",
    "attach_images",
    "check_image",
    "find_image_column",
    "open_image",
    "resolve_image",
]

IMAGES_KEY = "images"
"""Where :func:`attach_images` puts each row's list of image references."""
IMAGE_CANDIDATES: tuple[str, ...] = ("images", "image", "image_path", "image_paths", "img", "diagram")
"""Columns searched for images, in this order, when no image column is named."""
_BAD_ROW_MODES = ("error", "skip")


class ImageError(ValueError):
    """An image that is missing, unreadable or of an unsupported kind; the message names it."""


def find_image_column(columns: Sequence[str], image_column: str | None = None) -> str | None:
    """The image column: ``image_column`` if given (it must exist), else the first candidate present, else None."""
    if image_column is not None:
        if image_column not in columns:
            raise ImageError(
                f"no image column {image_column!r}; available columns: {', '.join(map(str, columns)) or '(none)'}"
            )
        return image_column
    return next((name for name in IMAGE_CANDIDATES if name in columns), None)


def _is_drawable(value: Any) -> bool:
    return callable(getattr(value, "load_image", None))


def _is_pil(value: Any) -> bool:
    try:
        # optional (Pillow): images only
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib and transformers' vision extra
        return False
    return isinstance(value, Image.Image)


def _decode_data_uri(text: str) -> bytes:
    header, sep, payload = text.partition(",")
    if not sep or ";base64" not in header:
        raise ImageError(f"a data URI must be 'data:image/...;base64,<payload>', got {text[:40]!r}...")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"a data URI with invalid base64 ({exc})") from None


def resolve_image(value: Any, root: str | os.PathLike | None = None) -> Any:
    """One image reference in canonical form: an absolute path string, bytes, a PIL image or a drawable.

    Relative paths are resolved against ``root`` (when given). Raises :class:`ImageError`
    for anything else (numbers, None, nested lists, an empty path).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if _is_pil(value) or _is_drawable(value):
        return value
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            return resolve_image(data, root)
        if path is not None:
            return resolve_image(path, root)
        raise ImageError(f"an image mapping needs 'bytes' or 'path', got keys {sorted(map(str, value))}")
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, bytes):  # a bytes path from os.PathLike
            text = os.fsdecode(text)
        if text.startswith("data:"):
            return _decode_data_uri(text)
        if not text.strip():
            raise ImageError("an empty image path")
        path = Path(text).expanduser()
        if not path.is_absolute() and root is not None:
            path = Path(root).expanduser() / path
        return str(path.resolve())
    if value is None:
        raise ImageError("the image is null")
    raise ImageError(
        f"cannot read an image from a {type(value).__name__} (expected a path, bytes, "
        "a {'bytes', 'path'} mapping or a PIL image)"
    )


def _describe(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    if isinstance(ref, bytes):
        return f"<{len(ref)} bytes>"
    return f"<{type(ref).__name__}>"


def open_image(ref: Any) -> Any:
    """An RGB ``PIL.Image.Image`` from a canonical reference (see :func:`resolve_image`), fully decoded.

    Raises :class:`ImageError` naming the file (or the bytes) for a missing or
    undecodable image.
    """
    # optional (Pillow): images only
    from PIL import Image, UnidentifiedImageError

    if _is_drawable(ref):
        image = ref.load_image()
        if not isinstance(image, Image.Image):
            raise ImageError(f"{type(ref).__name__}.load_image() returned {type(image).__name__}, not a PIL image")
    elif isinstance(ref, Image.Image):
        image = ref
    else:
        if isinstance(ref, str) and not os.path.exists(ref):
            raise ImageError(f"image file {ref} does not exist")
        if isinstance(ref, str) and not os.path.isfile(ref):
            raise ImageError(f"image path {ref} is not a file")
        source = ref if isinstance(ref, str) else io.BytesIO(ref)
        try:
            with Image.open(source) as handle:
                handle.load()
                image = handle.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"image {_describe(ref)} cannot be decoded ({type(exc).__name__}: {exc})") from None
    if image.width < 1 or image.height < 1:
        raise ImageError(f"image {_describe(ref)} is empty ({image.width}x{image.height})")
    return image if image.mode == "RGB" else image.convert("RGB")


def check_image(ref: Any) -> None:
    """Raise :class:`ImageError` unless ``ref`` exists and decodes (drawables are trusted until drawn)."""
    if _is_drawable(ref):
        return
    open_image(ref)


@dataclass
class PreparedExamples:
    """Rows with their images attached, and those left out."""

    examples: list[dict[str, Any]]
    """The kept rows, each with a list of image references under ``"images"``."""
    image_column: str | None
    """The source column (None: the rows have no images)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(row, reason) of each row left out with ``on_bad_row="skip"``."""

    def summary(self) -> str:
        """One line on images and skips, for the trainer's description."""
        if self.image_column is None:
            return "no images"
        images = sum(len(e[IMAGES_KEY]) for e in self.examples)
        text = f"{images} images from column {self.image_column!r}"
        if self.skipped:
            first_row, first_reason = self.skipped[0]
            text += f", {len(self.skipped)} rows skipped for bad images (first: {first_row}: {first_reason})"
        return text


def attach_images(
    examples: Sequence[Mapping[str, Any]],
    *,
    image_column: str | None = None,
    image_root: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    on_bad_row: str = "error",
    where: str = "example",
    start: int = 1,
    skip_hint: bool = True,
    check: bool = True,
) -> PreparedExamples:
    """Normalise and check every row's images (see the module docstring).

    Args:
        examples: the rows (dicts); they are copied, never modified.
        image_column: the column holding images (default: detected from the first row).
        image_root: folder relative paths are resolved against (default: the folder of
            ``source``, else the current directory).
        source: the data file the rows came from (for relative paths and messages).
        on_bad_row: "error" raises :class:`ImageError` at the first bad row; "skip"
            leaves it out and records it.
        where: how rows are named in messages ("data.train example" -> "data.train
            example 3").
        start: the number of the first row in messages (1: 1-based, the trainer's
            convention; 0: the evaluation records' example index).
        skip_hint: end an error with a hint that ``on_bad_row="skip"`` exists.
        check: open every image now (so that a bad file fails before training, not
            mid-run); drawables are not drawn.

    A row without images (an empty list or a null cell) is kept with ``images = []``
    unless ``image_column`` was named explicitly, in which case a null cell is an error.
    """
    if on_bad_row not in _BAD_ROW_MODES:
        raise ValueError(f"on_bad_row must be one of {_BAD_ROW_MODES}, got {on_bad_row!r}")
    rows = [dict(e) for e in examples]
    if not rows:
        return PreparedExamples([], None)
    column = find_image_column(list(rows[0]), image_column)
    if column is None:
        return PreparedExamples(rows, None)
    root = image_root if image_root is not None else (Path(source).expanduser().parent if source is not None else None)
    origin = f"{source}: " if source is not None else ""
    kept: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for index, row in enumerate(rows, start=start):
        name = f"{where} {index}"
        try:
            if column not in row:
                raise ImageError(f"no {column!r} column in this row")
            cell = row.pop(column)
            if cell is None and image_column is None:
                cell = []
            values = list(cell) if isinstance(cell, (list, tuple)) else [cell]
            refs = []
            for position, value in enumerate(values, start=1):
                try:
                    ref = resolve_image(value, root)
                    if check:
                        check_image(ref)
                except ImageError as exc:
                    raise ImageError(
                        f"image {position} of {len(values)}: {exc}" if len(values) > 1 else str(exc)
                    ) from None
                refs.append(ref)
            row[IMAGES_KEY] = refs
        except ImageError as exc:
            if on_bad_row == "error":
                hint = " (on_bad_row='skip' skips and counts such rows)" if skip_hint else ""
                raise ImageError(f"{origin}{name}, field {column!r}: {exc}{hint}") from None
            skipped.append((name, str(exc)))
            continue
        kept.append(row)
    if not kept:
        detail = "; ".join(f"{n}: {r}" for n, r in skipped[:3])
        raise ImageError(f"{origin}no usable examples: every row has a bad image ({detail})")
    return PreparedExamples(kept, column, skipped)

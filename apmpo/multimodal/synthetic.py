"""Synthetic geometry problems with diagrams drawn by matplotlib: multiple choice, known answers.

A stand-in for Geometry3K that needs no download: each problem is a diagram with
labelled lengths or angles, a question ("Find x.", "Find the area of the rectangle."),
four choices and the letter of the correct one. The quantity asked for is only in the
picture's labels, never in the text, so a model has to read the image.

Kinds (``kinds`` option; the answer in brackets):

- ``triangle_angle``: two angles of a triangle given, the third marked x [180 - a - b];
- ``isosceles_angle``: the apex angle of an isosceles triangle given, a base angle x [(180 - a) / 2];
- ``supplementary_angle``: a ray on a straight line, one angle given [180 - a];
- ``right_triangle``: the legs of a right triangle given, the hypotenuse x (Pythagorean triples);
- ``rectangle_area`` / ``rectangle_perimeter``: the sides of a rectangle given;
- ``circle_diameter``: the radius of a circle given.

Examples are dicts with ``prompt`` (question, choices and the answer instruction),
``answer`` (the letter), ``answer_value``, ``choices``, ``images`` (one
:class:`GeometryFigure`, drawn on first use and cached) and ``kind``. As for the
arithmetic tasks (:func:`apmpo.data.tasks.problem_split`), a problem belongs to the
train or the eval split by a hash of its kind and numbers, so the splits never share a
problem whatever the seeds; the seed picks the problems, the diagram's orientation and
the order of the choices. :func:`write_geometry_dataset` saves a split as PNG files and
a JSONL file in the layout :func:`apmpo.multimodal.geometry3k.load_geometry3k` reads.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apmpo.data.tasks import draw_problems
from apmpo.io import atomic_write_bytes

__all__ = [
    "CHOICE_LETTERS",
    "DEFAULT_INSTRUCTION",
    "GEOMETRY_KINDS",
    "GeometryFigure",
    "format_choices",
    "make_geometry",
    "write_geometry_dataset",
]

CHOICE_LETTERS = "ABCD"
DEFAULT_INSTRUCTION = "Answer with the letter of the correct choice."
_TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41))


@dataclass(frozen=True)
class GeometryFigure:
    """A diagram to draw: its kind, the numbers it shows, its rotation and size in pixels."""

    kind: str
    """One of :data:`GEOMETRY_KINDS`."""
    values: tuple[int, ...]
    """The numbers in the labels (angles in degrees, lengths)."""
    rotation: float = 0.0
    """Rotation of the drawing in degrees (visual variety; the problem is the same)."""
    size: int = 224
    """Width and height of the image in pixels."""

    def png_bytes(self) -> bytes:
        """The diagram as PNG bytes (drawn once per distinct figure, then cached)."""
        return _render_png(self)

    def load_image(self) -> Any:
        """The diagram as an RGB PIL image (what :func:`apmpo.multimodal.images.open_image` calls)."""
        # optional (Pillow): images only
        from PIL import Image

        with Image.open(io.BytesIO(self.png_bytes())) as image:
            return image.convert("RGB")


# --------------------------------------------------------------------------- drawing


def _rotate(points: list[tuple[float, float]], degrees: float) -> list[tuple[float, float]]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return [(x * c - y * s, x * s + y * c) for x, y in points]


def _triangle(a: float, b: float) -> list[tuple[float, float]]:
    """Vertices A=(0,0), B=(1,0) and C with angle a at A and b at B (law of sines)."""
    ra, rb = math.radians(a), math.radians(b)
    ac = math.sin(rb) / math.sin(ra + rb)
    return [(0.0, 0.0), (1.0, 0.0), (ac * math.cos(ra), ac * math.sin(ra))]


def _toward(p, q, t):
    return (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)


def _outside(p, q, centre, distance):
    """The midpoint of segment pq pushed ``distance`` away from ``centre``."""
    mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    dx, dy = mx - centre[0], my - centre[1]
    norm = math.hypot(dx, dy) or 1.0
    return (mx + dx / norm * distance, my + dy / norm * distance)


def _draw(figure: GeometryFigure, ax: Any) -> None:
    """Draw ``figure`` on matplotlib axes (equal aspect, no frame)."""
    kind, v, rot = figure.kind, figure.values, figure.rotation
    label = {"fontsize": 13, "ha": "center", "va": "center", "color": "black"}
    given = {**label, "color": "#1f4e9c"}

    def polygon(points):
        xs, ys = zip(*(points + points[:1]))
        ax.plot(xs, ys, color="black", linewidth=1.8)

    if kind in ("triangle_angle", "isosceles_angle"):
        if kind == "triangle_angle":
            a, b = v
            angles = (f"{a}\u00b0", f"{b}\u00b0", "x\u00b0")
            pts = _rotate(_triangle(a, b), rot)
        else:
            (apex,) = v
            base = (180 - apex) / 2
            pts = _rotate(_triangle(base, base), rot)
            angles = ("x\u00b0", "", f"{apex}\u00b0")
            for start, stop in ((pts[0], pts[2]), (pts[1], pts[2])):  # tick marks on the equal sides
                m = _toward(start, stop, 0.5)
                d = (stop[1] - start[1], -(stop[0] - start[0]))
                n = math.hypot(*d) or 1.0
                ax.plot(
                    [m[0] - d[0] / n * 0.03, m[0] + d[0] / n * 0.03],
                    [m[1] - d[1] / n * 0.03, m[1] + d[1] / n * 0.03],
                    color="black",
                    linewidth=1.5,
                )
        polygon(pts)
        centre = (sum(pt[0] for pt in pts) / 3, sum(pt[1] for pt in pts) / 3)
        for corner, text in zip(pts, angles):
            if text:
                ax.text(*_toward(corner, centre, 0.32), text, **(label if text.startswith("x") else given))
    elif kind == "supplementary_angle":
        (a,) = v
        line = _rotate([(-1.0, 0.0), (1.0, 0.0)], rot)
        ray = _rotate([(0.0, 0.0), (math.cos(math.radians(a)), math.sin(math.radians(a)))], rot)
        ax.plot(*zip(*line), color="black", linewidth=1.8)
        ax.plot(*zip(*ray), color="black", linewidth=1.8)
        for mid, text, style in ((a / 2, f"{a}\u00b0", given), ((180 + a) / 2, "x\u00b0", label)):
            ax.text(
                *_rotate([(0.35 * math.cos(math.radians(mid)), 0.35 * math.sin(math.radians(mid)))], rot)[0],
                text,
                **style,
            )
    elif kind == "right_triangle":
        p, q = v
        scale = max(p, q)
        pts = _rotate([(0.0, 0.0), (p / scale, 0.0), (0.0, q / scale)], rot)
        polygon(pts)
        box = _rotate([(0.06, 0.0), (0.06, 0.06), (0.0, 0.06)], rot)
        ax.plot(*zip(*box), color="black", linewidth=1.2)
        centre = (sum(x for x, _ in pts) / 3, sum(y for _, y in pts) / 3)
        ax.text(*_outside(pts[0], pts[1], centre, 0.09), str(p), **given)
        ax.text(*_outside(pts[0], pts[2], centre, 0.09), str(q), **given)
        ax.text(*_outside(pts[1], pts[2], centre, 0.09), "x", **label)
    elif kind in ("rectangle_area", "rectangle_perimeter"):
        w, h = v
        scale = max(w, h)
        pts = _rotate([(0.0, 0.0), (w / scale, 0.0), (w / scale, h / scale), (0.0, h / scale)], rot)
        polygon(pts)
        centre = (sum(x for x, _ in pts) / 4, sum(y for _, y in pts) / 4)
        ax.text(*_outside(pts[0], pts[1], centre, 0.1), str(w), **given)
        ax.text(*_outside(pts[3], pts[0], centre, 0.1), str(h), **given)
    elif kind == "circle_diameter":
        (r,) = v
        # heavy (matplotlib): imported only to draw
        from matplotlib.patches import Circle

        ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, color="black", linewidth=1.8))
        end = _rotate([(1.0, 0.0)], rot)[0]
        ax.plot([0.0, end[0]], [0.0, end[1]], color="black", linewidth=1.5)
        ax.plot([0.0], [0.0], marker="o", color="black", markersize=4)
        ax.text(*_toward((0.0, 0.0), end, 0.5), f"\n{r}", **given)
    else:  # unreachable: kinds are checked by make_geometry
        raise ValueError(f"unknown geometry kind {kind!r}")


@functools.lru_cache(maxsize=4096)
def _render_png(figure: GeometryFigure) -> bytes:
    # heavy (matplotlib): imported only to draw
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(figure.size / 100, figure.size / 100), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.06, 0.06, 0.88, 0.88))
    ax.set_aspect("equal")
    ax.axis("off")
    _draw(figure, ax)
    ax.autoscale_view()
    ax.margins(0.18)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


# --------------------------------------------------------------------------- problems


def _draw_problem(kind: str, rng: random.Random) -> tuple[tuple[int, ...], str, int, list[int]]:
    """(label values, question, answer, plausible wrong answers) of one problem of ``kind``."""
    if kind == "triangle_angle":
        a = rng.randint(25, 110)
        b = rng.randint(25, 150 - a)
        x = 180 - a - b
        return (a, b), "Find x.", x, [a + b, abs(a - b), 90 - x // 2, x + 10, x - 10, 180 - a]
    if kind == "isosceles_angle":
        apex = 2 * rng.randint(10, 70)
        x = (180 - apex) // 2
        return (apex,), "The triangle is isosceles. Find x.", x, [180 - apex, apex, apex // 2, x + 10, x - 10]
    if kind == "supplementary_angle":
        a = rng.randint(20, 160)
        x = 180 - a
        return (a,), "Find x.", x, [a, 90 - a if a < 90 else a - 90, 360 - a, x + 10, x - 10]
    if kind == "right_triangle":
        p, q, hyp = rng.choice(_TRIPLES)
        k = rng.randint(1, 3)
        p, q, hyp = p * k, q * k, hyp * k
        if rng.random() < 0.5:
            p, q = q, p
        return (p, q), "Find x.", hyp, [p + q, abs(q - p), hyp + k, hyp - k, max(p, q) + 1]
    if kind in ("rectangle_area", "rectangle_perimeter"):
        w, h = rng.randint(2, 15), rng.randint(2, 15)
        area, perimeter = w * h, 2 * (w + h)
        if kind == "rectangle_area":
            return (w, h), "Find the area of the rectangle.", area, [perimeter, w + h, area + w, area - h, 2 * area]
        return (
            (w, h),
            "Find the perimeter of the rectangle.",
            perimeter,
            [area, w + h, perimeter + 2, perimeter - 2, 4 * w],
        )
    if kind == "circle_diameter":
        r = rng.randint(2, 30)
        return (r,), "Find the diameter of the circle.", 2 * r, [r, 4 * r, r * r, 2 * r + 2, 2 * r - 1]
    raise ValueError(f"unknown geometry kind {kind!r}; known: {', '.join(GEOMETRY_KINDS)}")


GEOMETRY_KINDS = (
    "triangle_angle",
    "isosceles_angle",
    "supplementary_angle",
    "right_triangle",
    "rectangle_area",
    "rectangle_perimeter",
    "circle_diameter",
)


def format_choices(choices: list[str]) -> str:
    """``"Choices:\\nA. 3\\nB. 5..."`` (Geometry3K's four choices)."""
    return "Choices:\n" + "\n".join(f"{letter}. {value}" for letter, value in zip(CHOICE_LETTERS, choices))


def make_geometry(
    split: str,
    n: int,
    seed: int = 0,
    *,
    kinds: str | list[str] | tuple[str, ...] = GEOMETRY_KINDS,
    image_size: int = 224,
    rotate: bool = True,
    eval_fraction: float = 0.2,
    unique: bool | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
) -> list[dict[str, Any]]:
    """``n`` multiple-choice geometry problems with diagrams.

    Args:
        split: "train" or "eval" (disjoint problem sets, see the module docstring).
        n: number of examples.
        seed: picks the problems, rotations and choice orders within the split.
        kinds: problem kinds, drawn uniformly (names from :data:`GEOMETRY_KINDS`; a
            comma-separated string is accepted).
        image_size: image width and height in pixels (>= 56).
        rotate: rotate each diagram by a random angle.
        eval_fraction: share of the problem space reserved for "eval".
        unique: distinct problems (default: True for eval, False for train).
        instruction: the answer-format sentence after the choices.
    """
    chosen = tuple(k.strip() for k in kinds.split(",")) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in chosen if k not in GEOMETRY_KINDS]
    if not chosen or bad:
        raise ValueError(f"kinds: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(GEOMETRY_KINDS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 56:
        raise ValueError(f"image_size must be an integer >= 56 (pixels), got {image_size!r}")

    def draw(rng: random.Random) -> tuple[str, tuple]:
        kind = rng.choice(chosen)
        values, question, answer, wrong = _draw_problem(kind, rng)
        rotation = rng.uniform(0.0, 360.0) if rotate else 0.0
        return f"{kind}|{','.join(map(str, values))}", (kind, values, question, answer, wrong, rotation)

    def build(problem: tuple, rng: random.Random) -> dict[str, Any]:
        kind, values, question, answer, wrong, rotation = problem
        distractors = list(dict.fromkeys(w for w in wrong if w > 0 and w != answer))
        while len(distractors) < 3:
            distractors.append(answer + 3 * (len(distractors) + 1))
        options = [answer, *rng.sample(distractors, 3)]
        rng.shuffle(options)
        choices = [str(o) for o in options]
        letter = CHOICE_LETTERS[options.index(answer)]
        prompt = f"{question}\n{format_choices(choices)}"
        if instruction:
            prompt += f"\n{instruction}"
        return {
            "prompt": prompt,
            "answer": letter,
            "answer_value": str(answer),
            "choices": choices,
            "images": [GeometryFigure(kind, values, round(rotation, 1), image_size)],
            "kind": kind,
            "task": "geometry",
        }

    return draw_problems(
        "geometry",
        split,
        n,
        seed,
        draw,
        build,
        eval_fraction=eval_fraction,
        unique=unique,
        advice="ask for fewer, allow more kinds, or pass unique=False",
    )


def write_geometry_dataset(out_dir: str | os.PathLike, split: str, n: int, seed: int = 0, **options: Any) -> Path:
    """Write ``n`` synthetic problems as ``out_dir/images/<split>-NNNNN.png`` plus ``out_dir/<split>.jsonl``.

    Each JSONL row has ``id``, ``problem`` (``"<image>"`` + question + choices +
    instruction, the converted-Geometry3K layout), ``choices``, ``answer`` (letter),
    ``answer_value`` and ``images`` (the PNG's path relative to the JSONL file). Files
    are written to temporary names and renamed into place. Returns the JSONL path.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, example in enumerate(make_geometry(split, n, seed, **options)):
        name = f"images/{split}-{index:05d}.png"
        atomic_write_bytes(out / name, example["images"][0].png_bytes())
        lines.append(
            json.dumps(
                {
                    "id": f"{split}-{index:05d}",
                    "problem": "<image>" + example["prompt"],
                    "choices": example["choices"],
                    "answer": example["answer"],
                    "answer_value": example["answer_value"],
                    "images": [name],
                    "kind": example["kind"],
                }
            )
        )
    path = out / f"{split}.jsonl"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path

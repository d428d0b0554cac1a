"""The package's import structure: layers that point one way, no cycles, imports at the top of files.

``LAYERS`` is the map of the package, bottom first (docs/architecture.md draws it). A
module may import modules of its own package and of packages in lower layers only; two
packages in the same layer do not import each other. Every import between project
modules counts, including imports inside functions and under ``TYPE_CHECKING``: an
import moved into a function still ties the two modules together. An import inside a
function is allowed only for an optional heavy dependency or to keep ``import apmpo``
light, and says which in a comment.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "apmpo"

LAYERS: list[tuple[str, ...]] = [
    ("io", "provenance", "settings", "preemption"),  # atomic writes, provenance, settings loader, stop signals
    ("core",),  # the math: power mean, adaptive p, FAC, advantages, losses + registry, KL
    ("apmpo",),  # the package root: re-exports the math (``import apmpo`` imports only torch)
    ("rewards",),  # verifiable rewards, sandboxed workers
    ("data",),  # loaders, prompts, synthetic task generators, text-to-SQL (reads answers like the rewards)
    ("multimodal",),  # images, vision-language processors, geometry data
    ("models",),  # model loading: local, GGUF, embedded SmolLM2, tiny random (text and vision)
    ("tasks",),  # the built-in task registry, above data and multimodal
    ("sampling",),  # prompt encoding (text and vision) and generation
    ("eval",),  # Pass@k harness, metrics, suites, records, `apmpo eval`
    ("trainer",),  # config, setup, log-probs, the loop, checkpoints, tracking, `apmpo train`
    ("study",),  # study runner, report, statistics, warm-up, `apmpo study`
    ("integrations",),  # verl and TRL plug-ins
    ("cli",),  # the `apmpo` command
    ("__main__",),  # python -m apmpo
]
"""The layers, bottom first. Each name is a subpackage or a module directly under apmpo/."""

LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def unit(module: str) -> str:
    """The layer unit of a module: its subpackage or top-level module (``apmpo`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "apmpo"


def _resolve(name: str) -> str:
    """The project module an imported name lives in (``apmpo.core.losses.LOSSES`` -> ``apmpo.core.losses``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def project_imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function = {
        id(node)
        for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            source = ".".join(p for p in (base, node.module or "") if p)
            # "from apmpo import rewards" imports the module apmpo.rewards, not the root
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for name in dict.fromkeys(names):
            if name == "apmpo" or name.startswith("apmpo."):
                found.append((_resolve(name), node.lineno, id(node) in in_function))
    return found


EDGES = {module: project_imports(module) for module in MODULES}


def upward_imports() -> list[str]:
    """Imports from a module to a module of the same or a higher layer of another unit."""
    bad = []
    for module, imports in EDGES.items():
        for target, line, _ in imports:
            a, b = unit(module), unit(target)
            if a != b and LAYER_OF[b] >= LAYER_OF[a]:
                bad.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {module} ({a}, layer {LAYER_OF[a]}) "
                           f"imports {target} ({b}, layer {LAYER_OF[b]})")
    return bad


def cycles() -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), plus self-imports."""
    graph = defaultdict(set)
    for module, imports in EDGES.items():
        for target, _, _ in imports:
            if target != module or MODULES[module].name != "__init__.py":
                graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1 or node in graph[node]:
                found.append(sorted(members))

    for node in sorted(MODULES):
        if node not in index:
            visit(node)
    return found


def test_every_unit_has_a_layer():
    units = {unit(m) for m in MODULES}
    assert not sorted(units - set(LAYER_OF)), "add the new subpackage or module to LAYERS (and docs/architecture.md)"


def test_no_upward_imports():
    bad = upward_imports()
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles()
    assert not found, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def _function_imports_without_reason() -> list[str]:
    """Imports inside functions without a comment saying why: on the import's line, or on the line
    above the run of consecutive import statements it belongs to."""
    bad = []
    for path in MODULES.values():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            imports = sorted((n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))),
                             key=lambda n: n.lineno)
            first_of_run: dict[int, int] = {}
            for previous, node in zip([None, *imports], imports):
                joined = previous is not None and previous.end_lineno == node.lineno - 1
                first_of_run[node.lineno] = first_of_run[previous.lineno] if joined else node.lineno
            for node in imports:
                start = first_of_run[node.lineno]
                own = any("#" in lines[i - 1] for i in range(node.lineno, node.end_lineno + 1))
                above = lines[start - 2].strip() if start > 1 else ""
                if not own and not above.startswith("#"):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return bad


def test_function_level_imports_say_why():
    bad = _function_imports_without_reason()
    assert not bad, ("imports inside functions must be for an optional heavy dependency or to keep `import apmpo` "
                     "light, with a comment saying which:\n" + "\n".join(bad))


def test_no_project_imports_inside_functions():
    """Project modules are imported at the top of files: a function-level import would hide an upward edge."""
    bad = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: imports {target}"
           for m, imports in EDGES.items() for target, line, inside in imports if inside]
    assert not bad, "\n".join(bad)


def test_layer_map_is_documented():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [name for names in LAYERS for name in names if f"`{name}`" not in doc]
    assert not missing, f"docs/architecture.md does not name {missing}"


@pytest.mark.parametrize("name", ["apmpo.core", "apmpo.sampling", "apmpo.trainer.loop", "apmpo.study.runner"])
def test_the_checks_see_real_edges(name):
    """The import reader itself: a module known to import others is seen to (a broken reader would pass everything)."""
    assert EDGES[name], f"no imports found for {name}"


# --------------------------------------------------------------------------- the picture

SVG_PATH = PACKAGE.parent / "docs" / "img" / "layers.svg"


def render_svg() -> str:
    """docs/img/layers.svg: one band per layer, bottom layer at the bottom, arrows pointing down."""
    width, band, gap, left = 760, 34, 14, 20
    height = len(LAYERS) * (band + gap) + gap + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="14">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
           '<path d="M0,0 L10,4 L0,8 z" fill="#555"/></marker></defs>',
           f'<text x="{left}" y="20" font-size="13" fill="#333">apmpo: imports point down only '
           '(tests/test_architecture.py)</text>']
    for row, names in enumerate(reversed(LAYERS)):
        level = len(LAYERS) - 1 - row
        y = 30 + gap + row * (band + gap)
        out.append(f'<rect x="{left}" y="{y}" width="{width - 2 * left - 60}" height="{band}" rx="6" '
                   f'fill="{"#e8f0fe" if level % 2 else "#f1f8e9"}" stroke="#7a869a"/>')
        label = "  ·  ".join(f"apmpo/{n}" if n != "apmpo" else "apmpo/__init__.py" for n in names)
        out.append(f'<text x="{left + 12}" y="{y + 22}" fill="#111">{label}</text>')
        out.append(f'<text x="{width - left - 50}" y="{y + 22}" fill="#555">layer {level}</text>')
        if level:
            out.append(f'<line x1="{width // 2}" y1="{y + band}" x2="{width // 2}" y2="{y + band + gap - 1}" '
                       'stroke="#555" marker-end="url(#arrow)"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def test_layer_picture_is_current():
    assert SVG_PATH.read_text(encoding="utf-8") == render_svg(), (
        "docs/img/layers.svg is out of date: python tests/test_architecture.py --write-svg")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-svg"]:
        SVG_PATH.write_text(render_svg(), encoding="utf-8")
        print(f"wrote {SVG_PATH}")
    else:
        print(f"import edges: {sum(len(v) for v in EDGES.values())}, inside functions: "
              f"{sum(1 for v in EDGES.values() for _, _, inside in v if inside)}, upward: {len(upward_imports())}, "
              f"cycles: {len(cycles())}")

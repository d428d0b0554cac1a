"""The training step reads like its description: functions no deeper than three levels of blocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TRAINER = Path(__file__).resolve().parents[2] / "apmpo" / "trainer"
LOOP_MODULES = ("loop.py", "step.py")
"""The modules of the training loop: train() and the step's phases."""
MAX_DEPTH = 3
BLOCKS = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.Match)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def block_depth(node: ast.AST) -> int:
    """The deepest nesting of control blocks (for, while, if, with, try, match) inside ``node``'s body,
    not counting nested functions (they are measured on their own)."""
    deepest = 0
    for child in ast.iter_child_nodes(node):
        if isinstance(child, FUNCTIONS):
            continue
        inner = block_depth(child)
        if isinstance(child, BLOCKS) and not (isinstance(child, ast.If) and _is_elif(node, child)):
            inner += 1
        deepest = max(deepest, inner)
    return deepest


def _is_elif(parent: ast.AST, child: ast.If) -> bool:
    """An ``elif`` is an If alone in its parent If's else branch: the same level, not one deeper."""
    return isinstance(parent, ast.If) and parent.orelse == [child] and child.col_offset == parent.col_offset


def functions(path: Path) -> list[ast.AST]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("module", LOOP_MODULES)
def test_no_function_of_the_loop_nests_deeper_than_three_levels(module):
    found = functions(TRAINER / module)
    assert len(found) >= 8  # the module was read
    deep = {fn.name: block_depth(fn) for fn in found if block_depth(fn) > MAX_DEPTH}
    assert not deep, f"{module}: functions nested deeper than {MAX_DEPTH} levels: {deep}"


def _calls(function: ast.AST) -> list[str]:
    """Names of the plain functions ``function`` calls, in source order."""
    found = [n for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return [n.func.id for n in sorted(found, key=lambda n: (n.lineno, n.col_offset))]


def test_train_calls_the_phases_in_order():
    """train() is the outline: start, then per step train_step (sample -> prepare -> update), log_step, after_step."""
    loop = ast.parse((TRAINER / "loop.py").read_text(encoding="utf-8"))
    train = next(n for n in loop.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    calls = _calls(train)
    assert [c for c in calls if c in ("start", "train_step", "log_step", "after_step", "finish")] == [
        "start", "train_step", "log_step", "after_step", "finish"]
    step = ast.parse((TRAINER / "loop.py").read_text(encoding="utf-8"))
    train_step = next(n for n in step.body if isinstance(n, ast.FunctionDef) and n.name == "train_step")
    phases = _calls(train_step)
    assert [c for c in phases if c in ("sample", "prepare", "update")] == ["sample", "prepare", "update"]


@pytest.mark.parametrize("source, depth", [
    ("def f():\n    return 1\n", 0),
    ("def f():\n    for a in b:\n        if a:\n            pass\n", 2),
    ("def f():\n    if a:\n        pass\n    elif b:\n        pass\n    elif c:\n        pass\n", 1),
    ("def f():\n    try:\n        for a in b:\n            for c in d:\n                with e:\n                    pass\n"
     "    except E:\n        pass\n", 4),
    ("def f():\n    def g():\n        for a in b:\n            for c in d:\n                pass\n    return g\n", 0),
])
def test_the_depth_measure(source, depth):
    """The measure itself: a loop in a try in a with is three levels; elif chains are one; inner functions apart."""
    assert block_depth(ast.parse(source).body[0]) == depth

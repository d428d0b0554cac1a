"""The built-in tasks, registered in one place: ``BUILTIN_TASKS``, above data and multimodal.

A task is a seeded generator (or a loader of a local copy) with a default verifier, a
:class:`~apmpo.data.tasks.TaskSpec`. The generators live where their data does:

- ``arithmetic``, ``multistep``: synthetic integer problems (:mod:`apmpo.data.tasks`);
- ``sql``: text-to-SQL on SQLite, the shipped sqlbench or a Spider/BIRD folder
  (:mod:`apmpo.data.sql`);
- ``geometry``: multiple-choice geometry with generated diagrams
  (:mod:`apmpo.multimodal.synthetic`);
- ``geometry3k``: Geometry3K from a local copy (:mod:`apmpo.multimodal.geometry3k`).

``data.train: <name>`` in a training config and :func:`make_task_examples` look tasks up
here. Adding a task is one :class:`TaskSpec` entry below (see CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from apmpo.data.sql import SQL_INSTRUCTION, SQL_TASK_OPTIONS, make_sql_task
from apmpo.data.tasks import TaskSpec, keyword_defaults, make_arithmetic, make_multistep
from apmpo.multimodal.geometry3k import make_geometry3k
from apmpo.multimodal.synthetic import make_geometry

__all__ = ["BUILTIN_TASKS", "TaskSpec", "get_task", "make_task_examples"]

BUILTIN_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="arithmetic",
            make=make_arithmetic,
            description="integer a <op> b (default: addition of one- or two-digit numbers), answer an integer",
            options=keyword_defaults(make_arithmetic),
        ),
        TaskSpec(
            name="multistep",
            make=make_multistep,
            description="multi-operand integer expressions with precedence (default: three one-digit operands, + - *)",
            options=keyword_defaults(make_multistep),
        ),
        TaskSpec(
            name="sql",
            make=make_sql_task,
            description="text-to-SQL on SQLite (default: the shipped sqlbench; option root: a Spider or BIRD folder)",
            options=SQL_TASK_OPTIONS,
            default_reward="sql",
            instruction=SQL_INSTRUCTION,
        ),
        TaskSpec(
            name="geometry",
            make=make_geometry,
            description="synthetic multiple-choice geometry with matplotlib diagrams (angles, lengths, areas), "
            "answer a letter",
            options=keyword_defaults(make_geometry),
        ),
        TaskSpec(
            name="geometry3k",
            make=make_geometry3k,
            description="Geometry3K from a local copy (task option path: the Inter-GPS folder or a converted file), "
            "answer a letter",
            options=keyword_defaults(make_geometry3k),
        ),
    )
}
"""Task name -> :class:`TaskSpec`."""


def get_task(name: str) -> TaskSpec:
    """The registered task ``name`` (ValueError listing the known ones otherwise)."""
    try:
        return BUILTIN_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}") from None


def make_task_examples(name: str, split: str, n: int, seed: int = 0, **options: Any) -> list[dict[str, Any]]:
    """``n`` examples of task ``name`` for ``split``; unknown options are an error."""
    spec = get_task(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"task {name!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(spec.options)}")
    return spec.make(split, n, seed, **options)

"""The built-in tasks ``geometry`` (synthetic diagrams) and ``geometry3k`` (a local Geometry3K copy).

``apmpo.data`` registers them in ``BUILTIN_TASKS`` by calling :func:`geometry_task_specs`
(the specs are built on call, so that neither package imports the other at import time).
Both are scored by ``exact_match`` on the answer letter by default.
"""

from __future__ import annotations

from typing import Any

__all__ = ["geometry_task_specs"]


def geometry_task_specs() -> list[Any]:
    """``[TaskSpec("geometry", ...), TaskSpec("geometry3k", ...)]``."""
    from apmpo.data.tasks import TaskSpec, _keyword_defaults

    from .geometry3k import make_geometry3k
    from .synthetic import make_geometry

    return [
        TaskSpec(
            name="geometry",
            make=make_geometry,
            description="synthetic multiple-choice geometry with matplotlib diagrams (angles, lengths, areas), "
            "answer a letter",
            options=_keyword_defaults(make_geometry),
            default_reward="exact",
        ),
        TaskSpec(
            name="geometry3k",
            make=make_geometry3k,
            description="Geometry3K from a local copy (task option path: the Inter-GPS folder or a converted file), "
            "answer a letter",
            options=_keyword_defaults(make_geometry3k),
            default_reward="exact",
        ),
    ]

"""What a "data file" argument may be: a path, a shipped dataset, or a Hugging Face dataset.

Every place that accepts a data file (``load_examples``, ``apmpo eval --data``, suite
entries, ``data.train`` / ``data.eval`` of a training config) resolves the text it was
given with :func:`resolve_data_reference`:

=================================  ==============================================================
``hf:OWNER/NAME[@CONFIG]:SPLIT``   a Hugging Face dataset (:mod:`apmpo.data.hub`)
``shipped:NAME``                   a file shipped with apmpo (:mod:`apmpo.data.shipped`)
``NAME`` (no such file, no suffix)  the same shipped file: ``math500``, ``gsm8k/test``
anything else                      a path (``~`` expanded)
=================================  ==============================================================

A path that exists always wins over a shipped name, so a user's own ``math500`` file
is never shadowed.
"""

from __future__ import annotations

import os
from pathlib import Path

from apmpo.data.hub import HUB_PREFIX, HubDataset
from apmpo.data.shipped import SHIPPED_PREFIX, not_shipped_reason, shipped_path

__all__ = ["data_reference_problem", "is_data_reference", "resolve_data_reference"]


def _looks_like_name(text: str) -> bool:
    """A bare short name: no suffix, at most one '/', not absolute, not a path that exists."""
    path = Path(text)
    return (
        bool(text)
        and not path.suffix
        and not path.is_absolute()
        and text.count("/") <= 1
        and not text.startswith((".", "~"))
        and not path.exists()
    )


def is_data_reference(value: str | os.PathLike) -> bool:
    """True for ``hf:...`` and ``shipped:...`` references (which are not paths to check on disk)."""
    text = os.fspath(value)
    return text.startswith((HUB_PREFIX, SHIPPED_PREFIX))


def resolve_data_reference(value: str | os.PathLike) -> Path | HubDataset:
    """A path (shipped files resolved to theirs) or a :class:`HubDataset`; see the module doc.

    Raises ValueError for a malformed ``hf:`` reference, or a ``shipped:`` or bare name
    that is not shipped (listing the shipped names). A path is returned whether or not
    it exists: the reader's "no such file" names it.
    """
    text = os.fspath(value)
    if text.startswith(HUB_PREFIX):
        return HubDataset.parse(text)
    if text.startswith(SHIPPED_PREFIX):
        return shipped_path(text)
    if _looks_like_name(text):
        try:
            return shipped_path(text)
        except ValueError as exc:
            if not_shipped_reason(text):
                raise
            raise ValueError(f"{text}: no such file, and {str(exc).removeprefix(text + ': ')}") from None
    return Path(text).expanduser()


def data_reference_problem(value: str | os.PathLike) -> str | None:
    """Why ``value`` cannot be read (None when it can, as far as can be told without loading).

    Checks the ``hf:`` syntax (not the Hub: that needs a download), that a shipped name
    exists, and that a path is an existing file.
    """
    try:
        resolved = resolve_data_reference(value)
    except ValueError as exc:
        return str(exc)
    if isinstance(resolved, HubDataset):
        return None
    if resolved.is_file():
        return None
    if resolved.exists():
        return f"{value}: not a file"
    return f"{value}: no such file"

"""The ``apmpo`` command line.

Subcommands come from modules listed in ``SUBCOMMAND_MODULES``; each exposes
``register(subparsers)`` adding its parsers, with ``func(args) -> int`` set as the
default handler. A listed module that is not installed (yet) is skipped; any other
import error is raised, so a broken module is never hidden.

Errors a user can fix (a bad config, a missing file, a bad row) are printed as one
``apmpo: error: ...`` message with exit status 2, not as a traceback (set
``APMPO_DEBUG=1`` to get the traceback). A run that stops for a reason that is not a
bad input carries its exit status in an ``exit_code`` attribute and is printed the
same way: a clean stop on a signal (:class:`apmpo.preemption.Preempted`, 75), a second
signal (:class:`apmpo.preemption.HardStop`, 128 + the signal), a full disk
(:class:`apmpo.io.StorageError`, 74), a run stopped by non-finite updates
(:class:`apmpo.trainer.guard.NonFiniteError`, 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from apmpo import __version__

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "apmpo.trainer.commands",  # train, demo, config show / validate
    "apmpo.eval.cli",  # eval
    "apmpo.study.cli",  # study
)


def _import_optional(name: str):
    """Import ``name``; None if it (or a package above it) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == name or name.startswith(missing + "."):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="apmpo",
        description="APMPO (Adaptive Power-Mean Policy Optimization, arXiv 2605.04066): RLVR training and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"apmpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = _import_optional(name)
        if module is not None:
            module.register(subparsers)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``KEY=VALUE`` overrides may come anywhere after the subcommand.

    argparse fills a ``nargs="*"`` positional once, so ``apmpo train CONFIG --resume x=1``
    would leave ``x=1`` unrecognised; such leftovers are appended, in order, to the
    subcommand's ``overrides``. Anything else left over is an error, as with ``parse_args``.
    """
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list):
        stray = [tok for tok in extra if tok.startswith("-") or "=" not in tok]
        if not stray:
            args.overrides = [*args.overrides, *extra]
            return args
        extra = stray
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = _parse(parser, argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("apmpo: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        if os.environ.get("APMPO_DEBUG"):
            raise
        print(f"apmpo: error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:  # a run stopped for a documented reason: its message and exit status
        code = getattr(exc, "exit_code", None)
        if not isinstance(code, int) or os.environ.get("APMPO_DEBUG"):
            raise
        print(f"apmpo: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())

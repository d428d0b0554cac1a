"""``apmpo eval``: Pass@1 / pass@k / maj@k of a model on benchmark files, resumable.

``register(subparsers)`` adds the subcommand to the ``apmpo`` CLI; ``main(argv)`` runs it
on its own (``python -m apmpo.eval ...``). Everything is checked before the model is
loaded: settings, suite file, data files and their column mapping; a bad input exits
with status 2 and a message naming the file, row, field or flag.

Value precedence: a command-line flag, else the ``--protocol`` (greedy, r1; see
:mod:`apmpo.eval.protocols`), else the suite's ``generation:`` section, else the
defaults of :class:`apmpo.eval.settings.EvalSettings`; all of them are validated
together by the settings toolkit (:mod:`apmpo.settings`), each problem naming the flag,
the protocol or the suite file it came from.

``apmpo eval compare RUN_A RUN_B`` (:mod:`apmpo.eval.compare`) compares two runs.

On SIGTERM or SIGINT (:mod:`apmpo.preemption`) the evaluation stops at once: every
batch already appended to ``records.jsonl`` is kept whole (the batch in flight is not
written), and the command exits with status 75 saying to run it again, which resumes
from the records. A second signal during that exit stops at once (128 + the signal).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from apmpo.eval import compare
from apmpo.eval.harness import (
    EvalSettings,
    evaluate,
    format_table,
    load_benchmark,
    resolve_reward,
)
from apmpo.eval.protocols import PROTOCOLS, protocol_settings
from apmpo.eval.suites import DATA_SOURCES, load_suite, parse_data_spec
from apmpo.eval.tables import format_duration, paper_table, run_line
from apmpo.io import atomic_write_text
from apmpo.models import load_model_and_tokenizer
from apmpo.preemption import EXIT_PREEMPTED, HardStop, StepAbandoned, StopRequest
from apmpo.sampling.encoder import prompt_encoder_for
from apmpo.sampling.rollout import engine_message
from apmpo.sampling.settings import ENGINES
from apmpo.settings import ConfigError, build_settings

__all__ = ["build_parser", "main", "register", "run"]

_DESCRIPTION = """\
Evaluate a model on one or more benchmark files: n samples per example (greedy or
sampled), scored by a reward from apmpo.rewards; writes per-sample records
(OUT/records.jsonl), a summary (OUT/summary.json) and prints a table of Pass@1, pass@k
(unbiased estimator) and maj@k. Re-running the same command resumes an interrupted run.
"""

_EPILOG = """\
examples:
  apmpo eval --model ./ckpt --suite math --protocol greedy --out runs/math-greedy   # shipped data
  apmpo eval --model ./ckpt --suite math --protocol r1 --n 16 --out runs/math-r1
  apmpo eval compare runs/math-r1-step0 runs/math-r1-step400 --out runs/compare
  apmpo eval --model smollm2-135m-instruct --data gsm8k/test --limit 50 --out runs/gsm8k
  apmpo eval --model ./ckpt --data hf:HuggingFaceH4/MATH-500@default:test:math500 --out runs/m
  apmpo eval --model ./ckpt --suite math --data-root ~/math-evals --n 4 --k 1,4 \\
      --temperature 0.6 --top-p 0.95 --out runs/math
  apmpo eval --model ./ckpt --data my.parquet:mine --prompt-column question \\
      --answer-column final_answer --out runs/mine
  apmpo eval --model models/Qwen2.5-VL-3B-Instruct --data geo3k/test.jsonl:geometry3k \\
      --reward exact --max-pixels 1003520 --out runs/geo3k
"""


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("model and data")
    what.add_argument(
        "--model",
        help="model (required): a local HF directory, a .gguf file, "
        "'smollm2-135m-instruct' or 'tiny[:overrides]' (see apmpo.models)",
    )
    what.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="DATA[:NAME]",
        help="a benchmark: a file (.jsonl/.json/.parquet/.csv), a shipped dataset (shipped:math500 "
        "or math500) or a Hugging Face dataset (hf:OWNER/NAME[@CONFIG]:SPLIT), optionally named; "
        "repeatable; with --suite, a NAME of the suite replaces that benchmark's data",
    )
    what.add_argument(
        "--suite",
        metavar="FILE|NAME",
        help="a suite YAML listing benchmarks, or a packaged one ('math': eval_math_suite.yaml)",
    )
    what.add_argument(
        "--data-source",
        choices=DATA_SOURCES,
        help="where the suite's benchmarks are read from: shipped (the copies shipped with apmpo; "
        "the default), local (your copies under --data-root; the default with --data-root) or hub "
        "(the suite's Hugging Face datasets)",
    )
    what.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder holding your copies: the suite's relative paths resolve against it (--data-source local)",
    )
    what.add_argument("--benchmarks", metavar="NAME,...", help="evaluate only these benchmarks of the suite")
    what.add_argument("--prompt-column", help="column holding the problem in the --data files (default: detected)")
    what.add_argument(
        "--answer-column", help="column holding the reference answer in the --data files (default: detected)"
    )
    what.add_argument(
        "--answer-from-solution",
        metavar="COLUMN",
        help="take the reference answer from the last \\boxed{} of this column of the --data files",
    )
    what.add_argument("--limit", type=int, help="only the first N examples of each benchmark")

    images = parser.add_argument_group("images (vision-language models)")
    images.add_argument(
        "--image-column",
        help="column holding each example's image(s): paths, bytes or "
        "{bytes, path} (default: detected: images, image, image_path, ...)",
    )
    images.add_argument(
        "--image-root",
        metavar="DIR",
        help="folder relative image paths are resolved against (default: the data file's folder)",
    )
    images.add_argument(
        "--min-pixels", type=int, help="image processor's smallest image in pixels (Qwen2-VL: min_pixels)"
    )
    images.add_argument(
        "--max-pixels", type=int, help="image processor's largest image in pixels (Qwen2-VL: max_pixels)"
    )

    prompt = parser.add_argument_group("prompt and scoring")
    prompt.add_argument(
        "--template", help="prompt template, str.format fields naming columns (default: the suite's, else '{prompt}')"
    )
    prompt.add_argument("--system-prompt", help="system prompt (default: the suite's, else none)")
    prompt.add_argument(
        "--chat-template",
        choices=("auto", "on", "off"),
        help="apply the tokenizer's chat template (default: the suite's, else auto)",
    )
    prompt.add_argument("--reward", help="reward name from apmpo.rewards (default: the suite's, else math_accuracy)")
    prompt.add_argument(
        "--correct-threshold", type=float, help="a sample is correct when its score is >= this (default 1.0)"
    )

    gen = parser.add_argument_group("sampling and metrics")
    gen.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="decoding protocol: "
        + "; ".join(f"{p.name}: {p.description}" for p in PROTOCOLS.values())
        + " (flags below override it)",
    )
    gen.add_argument("--n", type=int, help="samples per example (default 1)")
    gen.add_argument("--k", help="comma-separated k values for pass@k, each <= n (default 1)")
    gen.add_argument("--maj-k", help="comma-separated k values for maj@k (default: the k values above 1)")
    gen.add_argument("--temperature", type=float, help="0 = greedy (default 0)")
    gen.add_argument("--top-p", type=float, help="nucleus sampling threshold (default 1.0)")
    gen.add_argument("--top-k", type=int, help="top-k sampling, 0 = off (default 0)")
    gen.add_argument("--max-new-tokens", type=int, help="longest completion (default 1024)")
    gen.add_argument("--max-prompt-tokens", type=int, help="refuse longer prompts (default: no limit)")
    gen.add_argument("--batch-size", type=int, help="samples per sampling call (default 16)")
    gen.add_argument("--seed", type=int, help="base seed of the per-batch sampling seeds (default 0)")
    gen.add_argument(
        "--engine",
        choices=ENGINES,
        help="fast: the sampling engine (default; models it cannot decode use generate, said at start-up); "
        "hf: transformers generate",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--out",
        metavar="DIR",
        help="output directory: records.jsonl, summary.json, run.json (an existing one is resumed)",
    )
    run.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--dtype", default="float32", help="model dtype: float32, bfloat16, float16 (default float32)")
    run.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: torch's choice); "
        "on a shared or busy machine 1 can be many times faster than oversubscribed threads",
    )
    run.add_argument("--trust-remote-code", action="store_true", help="allow custom model code in HF directories")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``eval`` argument parser (a new one, or ``parser`` filled in)."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="apmpo eval",
            description=_DESCRIPTION,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    _add_arguments(parser)
    commands = parser.add_subparsers(
        dest="eval_command", metavar="{compare}", title="subcommand (instead of evaluating)"
    )
    compare.register(commands)
    return parser


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to the ``apmpo`` CLI (its handler is ``args.func(args)``)."""
    parser = subparsers.add_parser(
        "eval",
        help="Pass@k / maj@k evaluation on benchmark files",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build_parser(parser)
    parser.set_defaults(func=run, handler=run)
    return parser


class _UsageError(Exception):
    """A bad input: printed as ``apmpo eval: error: ...`` with exit status 2."""


_SETTING_FLAGS = (
    "engine",
    "n",
    "k",
    "maj_k",
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "max_prompt_tokens",
    "batch_size",
    "seed",
    "limit",
    "correct_threshold",
)
"""The evaluation settings that have a flag of the same name (``--top-p`` for top_p)."""


def _settings(args, suite) -> EvalSettings:
    """Flags over the ``--protocol`` over the suite's ``generation:`` section over the defaults, validated together;
    a problem names the flag, the protocol or the suite file its value came from."""
    values = dict(suite.generation) if suite else {}
    origins = {}
    if args.protocol:
        n = args.n if args.n is not None else values.get("n")
        fixed = protocol_settings(args.protocol, n=n)
        values.update(fixed)
        from_suite = {"n"} if args.n is None and "n" in (suite.generation if suite else {}) else set()
        origins.update({name: f"--protocol {args.protocol}" for name in fixed if name not in from_suite})
    for name in _SETTING_FLAGS:
        value = getattr(args, name)
        if value is not None:
            values[name] = value
            origins[name] = f"--{name.replace('_', '-')} {value}"
    try:
        return build_settings(
            EvalSettings, values, source=f"{suite.source}: generation" if suite else None, origins=origins
        )
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None


def _benchmarks(args):
    """(benchmark specs, suite or None) from --suite and --data."""
    suite = None
    specs = []
    if args.suite:
        only = [n.strip() for n in args.benchmarks.split(",") if n.strip()] if args.benchmarks else None
        suite = load_suite(args.suite, data_root=args.data_root, only=only, data_source=args.data_source)
    elif args.benchmarks or args.data_root or args.data_source:
        raise _UsageError("--benchmarks, --data-root and --data-source apply to a --suite; give --suite or drop them")
    for text in args.data:
        spec = parse_data_spec(text)
        spec.prompt_column = args.prompt_column
        spec.answer_column = args.answer_column
        if args.answer_from_solution:
            spec.answer_from_solution = args.answer_from_solution
        if suite is not None and any(e.name == spec.name for e in suite.entries):
            suite.use_data(spec)  # --data FILE:NAME with a suite benchmark's name: that benchmark's data
        else:
            specs.append(spec)
    if suite is not None:
        specs = [*suite.benchmarks, *specs]
        for name, reason in suite.unavailable.items():
            print(f"apmpo eval: {name} is not evaluated: {reason}", file=sys.stderr)
    if not specs:
        raise _UsageError("nothing to evaluate: give --data PATH[:NAME] (repeatable) and/or --suite")
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _UsageError(f"two benchmarks are named {', '.join(duplicates)}; name them apart with --data PATH:NAME")
    return specs, suite


def _load(args, specs, suite, settings):
    chat = {"on": True, "off": False, "auto": "auto", None: None}[args.chat_template]
    defaults = {
        "template": args.template or (suite.template if suite else "{prompt}"),
        "system_prompt": args.system_prompt
        if args.system_prompt is not None
        else (suite.system_prompt if suite else None),
        "use_chat_template": chat if chat is not None else (suite.use_chat_template if suite else "auto"),
        "reward": args.reward or (suite.reward if suite else "math_accuracy"),
    }
    loaded = []
    for spec in specs:
        if args.template:  # an explicit flag wins over a suite entry's own template
            spec = spec.model_copy(update={"template": None})
        if args.system_prompt is not None:
            spec = spec.model_copy(update={"system_prompt": None})
        if args.reward:
            spec = spec.model_copy(update={"reward": None})
        loaded.append(load_benchmark(spec, limit=settings.limit, **defaults))
    return loaded


def run(args) -> int:
    """Run ``apmpo eval`` for parsed arguments; returns the exit status."""
    started = time.perf_counter()
    try:
        missing = [flag for flag, value in (("--model", args.model), ("--out", args.out)) if not value]
        if missing:
            raise _UsageError(f"{' and '.join(missing)} required (or: apmpo eval compare RUN_A RUN_B)")
        if args.threads is not None and args.threads < 1:
            raise _UsageError(f"--threads must be >= 1, got {args.threads}")
        if args.image_root is not None and not Path(args.image_root).expanduser().is_dir():
            raise _UsageError(f"--image-root {args.image_root}: no such directory")
        processor_kwargs = {
            k: v for k, v in (("min_pixels", args.min_pixels), ("max_pixels", args.max_pixels)) if v is not None
        }
        specs, suite = _benchmarks(args)
        settings = _settings(args, suite)
        benchmarks = _load(args, specs, suite, settings)
        _check_reward_names(benchmarks)
    except (_UsageError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"apmpo eval: error: {exc}", file=sys.stderr)
        return 2
    loaded_at = time.perf_counter()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    try:
        model, tokenizer = load_model_and_tokenizer(
            args.model,
            dtype=args.dtype,
            device=device,
            trust_remote_code=args.trust_remote_code,
            processor_kwargs=processor_kwargs,
        )
        encoder = prompt_encoder_for(tokenizer, image_column=args.image_column, image_root=args.image_root)
    except (ValueError, FileNotFoundError) as exc:
        print(f"apmpo eval: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"[apmpo eval] {args.model} on {', '.join(f'{b.name} ({len(b.examples)})' for b in benchmarks)}; "
        f"{f'protocol {args.protocol}, ' if args.protocol else ''}"
        f"n={settings.n}, {'greedy' if settings.greedy else f'T={settings.temperature}, top_p={settings.top_p}'}, "
        f"max_new_tokens={settings.max_new_tokens}, device={device}; model loaded in "
        f"{format_duration(time.perf_counter() - loaded_at)}",
        file=sys.stderr,
    )
    line, is_warning = engine_message(model, settings, setting="--engine")
    print(f"[apmpo eval] {'warning: ' if is_warning else ''}{line}", file=sys.stderr)
    stop = StopRequest(
        notice="{signal} received: stopping; the finished batches are kept (send it again to stop at once)"
    )
    try:
        with stop.installed(), stop.abandonable():
            result = evaluate(
                model,
                encoder,
                benchmarks,
                settings,
                out_dir=args.out,
                model_name=args.model,
                progress=not args.no_progress,
                extra_summary=_extra_summary(args, suite, settings),
            )
    except StepAbandoned:
        print(
            f"apmpo eval: stopped by {stop.signal_name}; the finished batches are saved in {args.out}: run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return EXIT_PREEMPTED
    except HardStop as exc:
        print(f"apmpo eval: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"apmpo eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"apmpo eval: interrupted; finished batches are saved in {args.out}: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    out = Path(args.out)
    print(format_table(result.summary))
    print()
    print(paper_table(result.summary))
    atomic_write_text(out / "table.md", paper_table(result.summary, markdown=True) + "\n")
    print(f"\n{run_line(result.summary)}; whole command {format_duration(time.perf_counter() - started)}")
    print(f"records: {out / 'records.jsonl'}\nsummary: {out / 'summary.json'}\ntable: {out / 'table.md'}")
    return 0


def _extra_summary(args, suite, settings: EvalSettings) -> dict:
    """Summary keys the CLI adds: the suite, where its data came from, the protocol, the command."""
    protocol = None
    if args.protocol:
        fixed = protocol_settings(args.protocol, n=settings.n)
        used = settings.model_dump()
        protocol = {
            "name": args.protocol,
            "description": PROTOCOLS[args.protocol].description,
            "overrides": {k: used[k] for k, v in fixed.items() if used[k] != v},
        }
    return {
        "suite": suite.source if suite else None,
        "suite_name": suite.name if suite else None,
        "suite_benchmarks": [e.name for e in suite.entries] if suite else None,
        "data_source": suite.data_source if suite else None,
        "not_evaluated": dict(suite.unavailable) if suite else {},
        "protocol": protocol,
        "command": _command(args),
    }


def _command(args) -> str | None:
    """The command line of this run, for the summary (None when it is not known)."""
    argv = getattr(args, "_argv", None)
    if argv is None and sys.argv[1:2] == ["eval"]:  # run through the `apmpo` entry point
        argv = sys.argv[2:]
    return None if argv is None else "apmpo eval " + " ".join(shlex.quote(a) for a in argv)


def _check_reward_names(benchmarks) -> None:
    for b in benchmarks:
        try:
            resolve_reward(b.reward)
        except ValueError as exc:
            raise _UsageError(f"benchmark {b.name!r}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]) and run (``compare ...`` runs the comparison)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    return args.func(args) if getattr(args, "eval_command", None) else run(args)

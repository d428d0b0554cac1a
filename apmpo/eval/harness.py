"""The evaluation harness: a model x benchmarks -> per-sample records, Pass@1 / pass@k / maj@k.

For every example of every benchmark the harness renders the prompt
(:func:`apmpo.data.render_prompt`), draws ``n`` completions with the trainer's
batched sampling (:func:`apmpo.sampling.rollout.generate_rollouts`: the fast sampling
engine, or transformers' ``generate`` with ``engine="hf"`` or for a model the engine
cannot decode; greedy when the temperature is 0, else sampling with temperature / top_p
/ top_k), scores each with a
reward from :mod:`apmpo.rewards` (score, reason and extracted answer), and summarises
with the estimators of :mod:`apmpo.eval.metrics`.

Work is a fixed list of samples ``(benchmark, example, sample)`` in example-major order,
cut per benchmark into consecutive batches of ``batch_size`` samples (one prompt row
per sample). Batch ``b`` of benchmark ``B`` is generated under its own seed, derived
from ``(seed, B, b)`` inside a forked RNG (the caller's RNG state is left untouched),
so a batch's completions do not depend on what ran before it.

Resume: with an output directory, records are appended to ``records.jsonl`` and
flushed + fsync-ed after every batch (:class:`apmpo.eval.records.RecordsFile`). A
restarted run reads them, skips every sample already recorded, and regenerates a batch
only if some of its samples are missing (e.g. the torn last line of a killed run);
only the missing records are written. With the same settings an interrupted and
resumed run therefore writes the same records as an uninterrupted one. ``run.json``
holds the settings that determine the samples (model, decoding, the engine that sampled,
seed, rewards); a
restart with different values is refused (listing them) instead of mixing samples from
two configurations. ``n``, ``limit``, the k lists and the benchmark list may change:
the summary always uses exactly the requested samples (sample indices < n, example
indices < the examples loaded), so extra records from a larger earlier run are kept on
disk but not counted. Changing ``batch_size`` is allowed but changes which seed
generates which sample. While a run writes to a directory it holds an exclusive lock
on ``.lock`` there, so a second run into the same directory is refused instead of
interleaving its records.

Vision-language models: ``tokenizer`` may be the model's processor (or a prompt encoder
from :func:`apmpo.sampling.prompt_encoder_for`); each benchmark's rows then get their
images attached and checked (relative paths against the data file's folder), and the
prompts are rendered and encoded with their images.

Departures worth knowing: correctness is ``score >= correct_threshold`` (default 1.0,
exact for the binary math rewards); a reward of None (no score) counts as score 0, i.e.
not correct (:func:`apmpo.rewards.score_value`; records keep the None). Greedy decoding with ``n > 1`` is refused: it would produce n
identical samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from apmpo import rewards
from apmpo.data.prompts import template_fields, validate_template
from apmpo.eval.metrics import ExampleStats, answer_key, metric_names, summarize
from apmpo.eval.records import RecordsFile
from apmpo.eval.settings import EvalSettings
from apmpo.eval.suites import BenchmarkSpec
from apmpo.io import atomic_write_json
from apmpo.rewards import score_value
from apmpo.rewards.extract import extract_answer
from apmpo.sampling.encoder import prompt_encoder_for
from apmpo.sampling.rollout import engine_for, generate_rollouts

__all__ = [
    "RECORDS_FILE",
    "RUN_FILE",
    "SUMMARY_FILE",
    "Benchmark",
    "EvalResult",
    "EvalSettings",
    "evaluate",
    "evaluate_examples",
    "format_table",
    "group_example_stats",
    "load_benchmark",
    "load_suite_benchmarks",
    "problem_fingerprint",
    "resolve_reward",
    "summarize_records",
]

RECORDS_FILE = "records.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
_ID_COLUMNS = ("id", "unique_id", "idx", "problem_id")


@dataclass
class Benchmark:
    """A loaded benchmark: examples plus how to prompt and score them."""

    name: str
    """Name in records and summary."""
    examples: list[dict[str, Any]]
    """Dicts with "prompt", "answer" and the file's other columns."""
    template: str = "{prompt}"
    """Prompt template (``str.format`` fields naming example columns)."""
    system_prompt: str | None = None
    """Optional system turn."""
    use_chat_template: bool | str = "auto"
    """Apply the tokenizer's chat template: "auto", True or False."""
    reward: str | Callable[..., Any] = "math_accuracy"
    """Reward name from apmpo.rewards, or a reward function (TRL contract)."""
    path: str | None = None
    """The source file, for the summary."""

    def __post_init__(self):
        if not (self.use_chat_template is True or self.use_chat_template is False or self.use_chat_template == "auto"):
            raise ValueError(
                f"benchmark {self.name!r}: use_chat_template must be True, False or 'auto', got {self.use_chat_template!r}"
            )

    @property
    def reward_name(self) -> str:
        """The reward function's ``__name__`` ("math" and "math_accuracy" both give "math_accuracy")."""
        fn = resolve_reward(self.reward)
        return getattr(fn, "__name__", None) or repr(fn)


def load_benchmark(
    spec: BenchmarkSpec,
    *,
    limit: int | None = None,
    template: str = "{prompt}",
    system_prompt: str | None = None,
    use_chat_template: bool | str = "auto",
    reward: str = "math_accuracy",
) -> Benchmark:
    """Read ``spec.path`` with its column mapping; the spec's own template/reward win over the defaults.

    Errors from the loader (missing file, unknown column, bad row, unreachable Hub)
    propagate with the file, row and field named (and the suite entry, for a suite's).
    """
    examples = spec.load_examples(limit=limit)
    chosen = spec.template or template
    template_fields(chosen)
    try:
        validate_template(chosen, examples.columns)
    except ValueError as exc:
        raise ValueError(f"{spec.path} ({spec.name}): {exc}") from None
    return Benchmark(
        name=spec.name,
        examples=list(examples),
        template=chosen,
        system_prompt=spec.system_prompt if spec.system_prompt is not None else system_prompt,
        use_chat_template=use_chat_template,
        reward=spec.reward or reward,
        path=str(spec.path),
    )


def load_suite_benchmarks(suite, *, limit: int | None = None) -> list[Benchmark]:
    """Every benchmark of a :class:`apmpo.eval.suites.Suite`, with the suite's prompt and reward."""
    return [
        load_benchmark(
            spec,
            limit=limit,
            template=suite.template,
            system_prompt=suite.system_prompt,
            use_chat_template=suite.use_chat_template,
            reward=suite.reward,
        )
        for spec in suite.benchmarks
    ]


@dataclass
class EvalResult:
    """What :func:`evaluate` returns."""

    summary: dict[str, Any]
    """The summary (also written to summary.json with an output directory)."""
    records: list[dict[str, Any]]
    """The counted sample records, ordered by benchmark, example, sample."""
    out_dir: Path | None = None
    """The output directory, if any."""

    def metric(self, name: str = "pass@1", benchmark: str | None = None) -> float:
        """One number: ``name`` of ``benchmark`` (None: the overall macro average)."""
        row = self.summary["overall"] if benchmark is None else self.summary["benchmarks"][benchmark]
        return row[name]


# --------------------------------------------------------------------------- scoring


def resolve_reward(reward: str | Callable[..., Any]) -> Callable[..., Any]:
    """The reward callable: ``reward`` itself, or the apmpo.rewards reward of that name.

    A name is looked up in ``apmpo.rewards.REWARDS`` (the config names: "math",
    "exact", ...) and else among the rewards' function names ("math_accuracy",
    "exact_match", ...). An unknown name raises KeyError listing both.
    """
    if callable(reward):
        return reward

    if reward in rewards.REWARDS:
        return rewards.get_reward(reward)
    by_function_name = {getattr(fn, "__name__", key): fn for key, fn in rewards.REWARDS.items()}
    if reward in by_function_name:
        return by_function_name[reward]
    known = sorted({*rewards.REWARDS, *by_function_name})
    raise ValueError(f"unknown reward {reward!r}; known rewards: {', '.join(known)}")


def _structured(fn: Callable[..., Any]) -> tuple[Callable[..., Any] | None, dict[str, Any]]:
    """(the ``score_items`` method behind ``fn``, keyword options bound to it) or (None, {}).

    Handles a reward from apmpo.rewards and a ``functools.partial`` of one (the way a
    trainer binds per-reward keyword options).
    """
    bound: dict[str, Any] = {}
    inner = fn
    while isinstance(inner, functools.partial):
        if inner.args:
            return None, {}
        bound = {**inner.keywords, **bound}
        inner = inner.func
    method = getattr(inner, "score_items", None)
    return (method, bound) if callable(method) else (None, {})


def _extraction_options(fn: Callable[..., Any], bound: Mapping[str, Any]) -> dict[str, Any]:
    """The answer-extraction options of a reward (its ``extractors``, ``last_number``, ``window``)."""
    inner = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    options = getattr(inner, "options", None)
    found = {}
    for name in ("extractors", "last_number", "window"):
        if name in bound:
            found[name] = bound[name]
        elif options is not None and hasattr(options, name):
            found[name] = getattr(options, name)
    return found


def _extract(text: str, options: Mapping[str, Any]) -> str | None:
    return extract_answer(text, **options)


def _score_batch(
    reward: str | Callable[..., Any],
    completions: list[str],
    examples: list[dict[str, Any]],
    labels: Sequence[str] | None = None,
) -> list[tuple[float | None, str, str | None]]:
    """(score, reason, extracted answer) per completion.

    The score and reason come from the reward's structured results (``score_items``);
    a plain TRL-style callable gives scores only (reason ``"score from NAME"``). The
    extracted answer is the one the reward graded (``RewardResult.answer``) when its
    results carry that field, else the answer found by
    :func:`apmpo.rewards.extract.extract_answer` with the reward's extraction options.
    A NaN or infinite score raises ValueError naming the reward and the sample
    (``labels``: one per completion).
    """
    fn = resolve_reward(reward)
    columns: dict[str, list[Any]] = {}
    for name in examples[0]:
        if name != "prompt" and all(name in e for e in examples):
            columns[name] = [e[name] for e in examples]
    method, bound = _structured(fn)
    options = _extraction_options(fn, bound)
    out = []
    if method is not None:
        results = method(completions, **{**columns, **bound})
        for text, result in zip(completions, results):
            score = None if result.score is None else float(result.score)
            extracted = result.answer if hasattr(result, "answer") else _extract(text, options)
            out.append((score, str(result.reason), None if extracted is None else str(extracted)))
    else:
        scores = fn(completions, **columns)
        if len(scores) != len(completions):
            raise ValueError(
                f"reward {getattr(fn, '__name__', fn)!r} returned {len(scores)} scores for {len(completions)} completions"
            )
        name = getattr(fn, "__name__", "reward")
        for text, score in zip(completions, scores):
            out.append((None if score is None else float(score), f"score from {name}", _extract(text, options)))
    for i, (score, _, _) in enumerate(out):
        if score is not None and not math.isfinite(score):
            where = f" for {labels[i]}" if labels is not None else ""
            raise ValueError(f"reward {getattr(fn, '__name__', fn)!r} returned a non-finite score {score!r}{where}")
    return out


# --------------------------------------------------------------------------- generation


def _batch_seed(seed: int, benchmark: str, batch_index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{benchmark}/{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


@contextlib.contextmanager
def _seeded(seed: int, device):
    """Run under ``torch.manual_seed(seed)`` and restore the caller's RNG states afterwards."""
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _generate(
    model,
    encoder,
    prompts: list[str],
    examples: list[Mapping[str, Any]],
    add_special_tokens: bool,
    settings: EvalSettings,
):
    """Texts, token counts and truncation flags for one batch of prompt rows (one sample each)."""
    device = next(model.parameters()).device
    batch = encoder.encode(
        prompts,
        examples,
        add_special_tokens=add_special_tokens,
        max_prompt_tokens=settings.max_prompt_tokens,
        device=device,
    )
    rollout = generate_rollouts(model, encoder.tokenizer, batch, settings, num_samples=1, batch_size=0)
    lengths = rollout.completion_lengths.tolist()  # [N]
    truncated = rollout.truncated.tolist()  # [N]
    return rollout.completions, [int(x) for x in lengths], [bool(x) for x in truncated], rollout.meta


# --------------------------------------------------------------------------- the run


def _render_all(benchmark: Benchmark, encoder) -> tuple[list[str], bool]:
    prompts = [
        encoder.render(
            example,
            template=benchmark.template,
            system_prompt=benchmark.system_prompt,
            use_chat_template=benchmark.use_chat_template,
            where=f"{benchmark.name} example {index}",
        )
        for index, example in enumerate(benchmark.examples)
    ]
    return prompts, encoder.add_special_tokens(benchmark.use_chat_template)


def _example_id(example: Mapping[str, Any]) -> Any:
    for name in _ID_COLUMNS:
        value = example.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
    return None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_json(path, data, default=_json_default)


def _run_identity(model_name: str | None, benchmarks: Sequence[Benchmark], settings: EvalSettings, engine: str) -> dict:
    """What determines the samples: the model, the decoding settings, the engine that samples (``engine_for``: the
    one used, not the one asked for), the rewards."""
    return {
        "model": model_name,
        **settings.generation_fingerprint(),
        "engine": engine,
        "rewards": {b.name: b.reward_name for b in benchmarks},
    }


def _check_run_identity(path: Path, identity: dict) -> dict:
    """Compare with a stored run.json; returns the merged identity to store."""
    if not path.exists():
        return identity
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc}); delete it to start this output directory afresh") from None
    stored.setdefault("engine", "hf")  # a run.json written before the engine was recorded: generate sampled
    differences = []
    for key, value in identity.items():
        if key == "rewards":
            continue
        if key in stored and stored[key] != value:
            differences.append(f"{key}: recorded {stored[key]!r}, now {value!r}")
    stored_rewards = stored.get("rewards", {})
    for name, reward in identity["rewards"].items():
        if name in stored_rewards and stored_rewards[name] != reward:
            differences.append(f"reward of {name}: recorded {stored_rewards[name]!r}, now {reward!r}")
    if differences:
        raise ValueError(
            f"{path.parent}: holds samples from a different configuration ({'; '.join(differences)}); "
            "use another output directory, or delete it to start afresh"
        )
    merged = dict(stored)
    merged.update({k: v for k, v in identity.items() if k != "rewards"})
    merged["rewards"] = {**stored_rewards, **identity["rewards"]}
    return merged


@contextlib.contextmanager
def _exclusive(directory: Path):
    """Hold an exclusive lock on ``directory/.lock``; a second writer is refused, not interleaved."""
    try:
        # POSIX only (fcntl): skipped where missing
        import fcntl
    except ImportError:  # no flock (Windows): concurrent runs are the user's responsibility
        yield
        return
    with open(directory / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(
                f"{directory}: another evaluation is writing to this directory; wait for it or choose another"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_progress(total: int, initial: int, enabled: bool):
    """A tqdm bar on stderr: samples done / total, elapsed, ETA, samples/s (postfix: benchmark, tokens/s)."""
    if not enabled:
        return None

    return tqdm(
        total=total,
        initial=initial,
        unit=" samples",
        desc="eval",
        dynamic_ncols=True,
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} samples "
        "[{elapsed} elapsed, ETA {remaining}, {rate_noinv_fmt}{postfix}]",
    )


def problem_fingerprint(examples: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 over the examples' problems and reference answers, in order (what a comparison pairs)."""
    digest = hashlib.sha256()
    for example in examples:
        pair = [example.get("prompt"), example.get("answer")]
        digest.update(json.dumps(pair, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def evaluate(
    model,
    tokenizer,
    benchmarks: Sequence[Benchmark],
    settings: EvalSettings | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    model_name: str | None = None,
    progress: bool = True,
    extra_summary: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``benchmarks``; resumable when ``out_dir`` is given.

    Args:
        model: a causal LM or vision-language model (e.g. from
            :func:`apmpo.models.load_model_and_tokenizer`).
        tokenizer: its tokenizer (left padding, with a pad token), its processor, or a
            prompt encoder (:func:`apmpo.sampling.prompt_encoder_for`; e.g. to name
            the image column).
        benchmarks: loaded benchmarks (:func:`load_benchmark`), distinct names.
        settings: sampling and reporting settings (default: greedy, n = 1).
        out_dir: write ``records.jsonl``, ``summary.json`` and ``run.json`` here and
            resume from them; None keeps everything in memory.
        model_name: how the model is named in run.json / the summary (compared on
            resume, so name the same model the same way).
        progress: show a tqdm progress bar (on stderr).
        extra_summary: more keys for the summary (e.g. the suite name, the command).

    Returns the :class:`EvalResult` (summary and counted records).
    """
    settings = settings or EvalSettings()
    names = [b.name for b in benchmarks]
    if not benchmarks:
        raise ValueError("evaluate: no benchmarks given")
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: duplicate benchmark names {sorted({n for n in names if names.count(n) > 1})}")
    limited = [
        dataclasses.replace(b, examples=b.examples[: settings.limit]) if settings.limit else b for b in benchmarks
    ]
    for b in limited:
        if not b.examples:
            raise ValueError(f"benchmark {b.name!r}: no examples")
        try:
            resolve_reward(b.reward)
        except ValueError as exc:
            raise ValueError(f"benchmark {b.name!r}: {exc}") from None

    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is None:
        return _evaluate(model, tokenizer, limited, settings, None, model_name, progress, extra_summary)
    out_path.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_path):
        return _evaluate(model, tokenizer, limited, settings, out_path, model_name, progress, extra_summary)


def _evaluate(
    model,
    tokenizer,
    limited: list[Benchmark],
    settings: EvalSettings,
    out_path: Path | None,
    model_name: str | None,
    progress: bool,
    extra_summary: Mapping[str, Any] | None,
) -> EvalResult:
    """:func:`evaluate` after the arguments are checked (and the output directory locked)."""
    encoder = prompt_encoder_for(tokenizer)
    limited = [
        dataclasses.replace(
            b,
            examples=encoder.prepare(
                b.examples, source=b.path, where=f"{b.name} example", start=0, skip_hint=False
            ).examples,
        )
        for b in limited
    ]
    store = RecordsFile(out_path / RECORDS_FILE) if out_path is not None else None
    engine = engine_for(model, settings)[0]
    identity = _run_identity(model_name, limited, settings, engine)
    if out_path is not None:
        identity = _check_run_identity(out_path / RUN_FILE, identity)
    existing = store.load() if store is not None else {}

    rendered = {b.name: _render_all(b, encoder) for b in limited}
    for (bench_name, example, _), record in existing.items():
        prompts = rendered[bench_name][0] if bench_name in rendered else []
        if store is not None and example < len(prompts) and record.get("prompt") != prompts[example]:
            raise ValueError(
                f"{store.path}: benchmark {bench_name!r} example {example}: the recorded prompt differs from the "
                "prompt rendered now (the data file, template, system prompt or tokenizer changed); "
                "use another output directory"
            )
    if out_path is not None:
        _write_json_atomic(out_path / RUN_FILE, identity)

    # The work: per benchmark, example-major (example, sample) units cut into fixed batches.
    plan = []
    for b in limited:
        units = [(i, j) for i in range(len(b.examples)) for j in range(settings.n)]
        for index, start in enumerate(range(0, len(units), settings.batch_size)):
            plan.append((b, index, units[start : start + settings.batch_size]))
    total = sum(len(units) for _, _, units in plan)
    done = sum(1 for b, _, units in plan for i, j in units if (b.name, i, j) in existing)

    device = next(model.parameters()).device
    started = time.perf_counter()
    generated = tokens = 0
    gen_seconds = 0.0
    bar = _make_progress(total, done, progress)
    try:
        for bench, batch_index, units in plan:
            missing = [u for u in units if (bench.name, *u) not in existing]
            if not missing:
                continue
            prompts, add_special = rendered[bench.name]
            rows = [prompts[i] for i, _ in units]
            with _seeded(_batch_seed(settings.seed, bench.name, batch_index), device):
                try:
                    texts, lengths, truncated, meta = _generate(
                        model, encoder, rows, [bench.examples[i] for i, _ in units], add_special, settings
                    )
                except ValueError as exc:
                    first = units[0][0]
                    raise ValueError(f"benchmark {bench.name!r}, batch from example {first}: {exc}") from None
            gen_seconds += float(meta.get("generation_seconds", 0.0))
            position = {u: row for row, u in enumerate(units)}
            wanted = [position[u] for u in missing]
            scored = _score_batch(
                bench.reward,
                [texts[r] for r in wanted],
                [bench.examples[i] for i, _ in missing],
                labels=[f"benchmark {bench.name!r} example {i}, sample {j}" for i, j in missing],
            )
            new_records = []
            for (i, j), row, (score, reason, extracted) in zip(missing, wanted, scored):
                row_example = bench.examples[i]
                new_records.append(
                    {
                        "benchmark": bench.name,
                        "example_index": i,
                        "sample_index": j,
                        "example_id": _example_id(row_example),
                        "prompt": prompts[i],
                        "completion": texts[row],
                        "reference": row_example["answer"],
                        "extracted": extracted,
                        "score": score,
                        "reason": reason,
                        "completion_tokens": lengths[row],
                        "truncated": truncated[row],
                    }
                )
            if store is not None:
                store.append(new_records)
            for record in new_records:
                existing[(record["benchmark"], record["example_index"], record["sample_index"])] = record
            generated += len(new_records)
            tokens += sum(r["completion_tokens"] for r in new_records)
            if bar is not None:
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(f"{bench.name}, {tokens / elapsed:.1f} tokens/s", refresh=False)
                bar.update(len(new_records))
    finally:
        if bar is not None:
            bar.close()

    counted = [existing[(b.name, i, j)] for b in limited for i in range(len(b.examples)) for j in range(settings.n)]
    summary = summarize_records(counted, settings, order=[b.name for b in limited])
    summary = {
        "model": model_name,
        **(dict(extra_summary) if extra_summary else {}),
        "decoding": "greedy" if settings.greedy else "sampled",
        "settings": settings.model_dump(mode="json"),
        "paths": {b.name: b.path for b in limited},
        "prompts": {
            b.name: {"template": b.template, "system_prompt": b.system_prompt, "use_chat_template": b.use_chat_template}
            for b in limited
        },
        "rewards": {b.name: b.reward_name for b in limited},
        "problems": {b.name: {"count": len(b.examples), "sha256": problem_fingerprint(b.examples)} for b in limited},
        **summary,
        "run": {
            "samples_total": total,
            "samples_resumed": done,
            "samples_generated": generated,
            "tokens_generated": tokens,
            "engine": engine,
            "generation_seconds": round(gen_seconds, 3),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "records": str(store.path) if store is not None else None,
        },
    }
    if out_path is not None:
        _write_json_atomic(out_path / SUMMARY_FILE, summary)
    return EvalResult(summary=summary, records=counted, out_dir=out_path)


def group_example_stats(
    records: Iterable[Mapping[str, Any]], correct_threshold: float, *, order: Sequence[str] | None = None
) -> dict[str, list[ExampleStats]]:
    """Sample records -> per benchmark, per example (by index), the :class:`ExampleStats` the metrics need.

    A sample is correct when its score is >= ``correct_threshold`` (None counts as 0);
    samples are ordered by their index. ``order`` names the benchmarks (default: as seen).
    """
    grouped: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for record in records:
        grouped.setdefault(record["benchmark"], {}).setdefault(record["example_index"], []).append(record)
    names = list(order) if order is not None else list(grouped)
    stats: dict[str, list[ExampleStats]] = {}
    for name in names:
        examples = []
        for index in sorted(grouped.get(name, {})):
            samples = sorted(grouped[name][index], key=lambda r: r["sample_index"])
            scores = [score_value(r.get("score")) for r in samples]
            examples.append(
                ExampleStats(
                    correct=[s >= correct_threshold for s in scores],
                    keys=[answer_key(r.get("extracted")) for r in samples],
                    scores=scores,
                    completion_tokens=[int(r["completion_tokens"]) for r in samples if "completion_tokens" in r],
                    truncated=[bool(r["truncated"]) for r in samples if "truncated" in r],
                )
            )
        stats[name] = examples
    return stats


def summarize_records(
    records: Iterable[Mapping[str, Any]], settings: EvalSettings, *, order: Sequence[str] | None = None
) -> dict[str, Any]:
    """Metrics from sample records: ``{"metrics", "benchmarks", "overall", "all"}``.

    Records are grouped by benchmark and example and sorted by sample index; each
    benchmark row also gets its ``path``-independent counts (see
    :func:`apmpo.eval.metrics.aggregate`).
    """
    stats = group_example_stats(records, settings.correct_threshold, order=order)
    maj_k = settings.maj_k or []
    result = summarize(stats, settings.k, maj_k)
    return {"metrics": metric_names(settings.k, maj_k), **result}


def format_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table of a summary: one row per benchmark plus the averages (metrics in %)."""
    metrics = list(summary["metrics"])
    header = ["benchmark", "examples", "n", *metrics, "answered", "tokens", "truncated"]

    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    def row(name, data):
        n = data.get("n_min")
        n_text = "-" if n is None else (str(n) if n == data.get("n_max") else f"{n}-{data['n_max']}")
        tokens = data.get("mean_completion_tokens")
        return [
            name,
            str(data["examples"]),
            n_text,
            *[pct(data.get(m)) for m in metrics],
            pct(data.get("answer_rate")),
            "-" if tokens is None else f"{tokens:.0f}",
            pct(data.get("truncation_rate")),
        ]

    rows = [row(name, data) for name, data in summary["benchmarks"].items()]
    if len(summary["benchmarks"]) > 1:
        rows.append(row("average (macro)", summary["overall"]))
        rows.append(row("all (micro)", summary["all"]))
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) if c == 0 else h.rjust(w) for c, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))))
    decoding = summary.get("decoding")
    settings = summary.get("settings", {})
    if decoding:
        detail = (
            "greedy"
            if decoding == "greedy"
            else (f"sampled, temperature {settings.get('temperature')}, top_p {settings.get('top_p')}")
        )
        lines.append(f"({detail}; metrics in %; answered = samples with an extracted answer)")
    return "\n".join(lines)


def evaluate_examples(
    model,
    tokenizer,
    examples: Sequence[Mapping[str, Any]],
    settings: EvalSettings | None = None,
    *,
    name: str = "eval",
    template: str = "{prompt}",
    system_prompt: str | None = None,
    use_chat_template: bool | str = "auto",
    reward: str | Callable[..., Any] = "math_accuracy",
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> EvalResult:
    """Evaluate in-memory examples (dicts with "prompt" and "answer"), e.g. a trainer's held-out split.

    A thin wrapper over :func:`evaluate` with one benchmark; nothing is written unless
    ``out_dir`` is given. ``result.metric("pass@1")`` is the accuracy.
    """
    benchmark = Benchmark(
        name=name,
        examples=[dict(e) for e in examples],
        template=template,
        system_prompt=system_prompt,
        use_chat_template=use_chat_template,
        reward=reward,
    )
    return evaluate(model, tokenizer, [benchmark], settings, out_dir=out_dir, progress=progress)

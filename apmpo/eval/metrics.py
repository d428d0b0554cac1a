"""Pass@k, maj@k and their aggregation: pure functions over per-sample correctness and answers.

Definitions (per example with ``n`` samples of which ``c`` are correct):

- **Pass@1** is the mean correctness over the n samples, ``c / n`` (the k = 1 case of
  the estimator below), averaged over examples.
- **pass@k** is the unbiased estimator of Chen et al. 2021 (Codex, arXiv 2107.03374),
  ``1 - C(n - c, k) / C(n, k)``: the probability that at least one of k samples drawn
  without replacement from the n is correct. It is computed as the product
  ``prod_{i = n-c+1}^{n} (1 - k / i)`` (no large binomials, no overflow), and is 1
  when ``n - c < k``. It needs ``k <= n``.
- **maj@k** (majority voting, "self-consistency") takes k samples, groups their
  extracted answers into equivalence classes by :func:`answer_key` (a normalised
  string), and scores the most frequent class. Samples without an extracted answer
  do not vote; when no sample of the k has one, the vote scores 0. With ``n >= k``
  samples the n are cut, in sample order, into ``n // k`` disjoint blocks of k
  (the ``n % k`` last samples are left out) and maj@k is the mean over the blocks:
  each block is an unbiased draw of k i.i.d. samples, and averaging blocks lowers
  the variance over using only the first k.
- **Ties** in a vote are broken by expectation: the vote scores the mean correctness
  of the tied top classes, i.e. the expected score of picking one of them uniformly
  at random. A class's correctness is the mean correctness of its members (members of
  one class normally agree; when the verifier accepts one spelling and rejects
  another that normalises to the same key, this is again the expected score of a
  random representative). This makes maj@k independent of sample order within a
  block, unlike first-seen tie-breaking.

Correctness is a boolean per sample; the harness derives it from the reward score
(``score >= threshold``, with ``None`` counted as incorrect).

Aggregation: :func:`example_metrics` scores one example; :func:`aggregate` averages
examples of one benchmark (every example weighs the same, whatever its n); the
"overall" row of :func:`summarize` is the unweighted mean of the benchmark rows (the
paper's "avg" column), and the "all" row pools every example of every benchmark.

**Standard error over problems** (lighteval's ``<metric>_stderr``): for a benchmark of
``N`` problems whose per-problem values of a metric are ``x_1..x_N`` (for Pass@1, each
``x_i = c_i / n``), ``stderr = s / sqrt(N)`` with ``s`` the sample standard deviation
(``N - 1`` in the denominator); undefined (None) for ``N < 2``. It measures how much
the benchmark score would move with another draw of problems *and* of samples (the
per-problem values carry the sampling noise). The macro average of ``B`` benchmarks
gets ``sqrt(sum_b stderr_b**2) / B`` (benchmarks independent); the pooled "all" row
gets the formula above over all its problems.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ExampleStats",
    "aggregate",
    "answer_key",
    "example_metrics",
    "maj_at_k",
    "majority_vote",
    "metric_names",
    "pass_at_1",
    "pass_at_k",
    "stderr",
    "summarize",
]


def _check_count(value, name: str, minimum: int) -> int:
    """``value`` as an int (Python or numpy integer; bool and float refused), >= minimum."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got a boolean ({value!r})")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which is exact in rational
    arithmetic and stable in floating point for any n. Raises ValueError unless
    ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    n = _check_count(n, "n", 1)
    c = _check_count(c, "c", 0)
    k = _check_count(k, "k", 1)
    if c > n:
        raise ValueError(f"c (correct samples) = {c} exceeds n (samples) = {n}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least k = {k} samples per example, got n = {n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def pass_at_1(correct: Sequence[bool]) -> float:
    """Mean correctness of the samples of one example (``c / n``)."""
    if len(correct) == 0:
        raise ValueError("pass@1 of an example with no samples is undefined")
    return sum(bool(x) for x in correct) / len(correct)


_SPACE = re.compile(r"\s+")
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\{([^{}]*)\}")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def answer_key(answer: str | None) -> str | None:
    """Normalised form of an extracted answer, the equivalence class used by majority votes.

    Purely textual (no symbolic equivalence): strips surrounding whitespace and ``$``,
    ``\\left``/``\\right``, spacing commands (``\\!``, ``\\,``, ``\\;``, ``\\ ``),
    ``\\text{...}``-style wrappers (keeping their content), ``dfrac``/``tfrac`` to
    ``frac``, a trailing period, all whitespace, and thousands separators in plain
    integers; a plain decimal number is written in its shortest form (``"70.0"`` and
    ``"70"`` are one class). Returns None for None or an answer that is empty after
    normalisation (such a sample does not vote).
    """
    if answer is None:
        return None
    text = str(answer).strip()
    text = text.strip("$").strip()
    for command in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ "):
        text = text.replace(command, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    previous = None
    while previous != text:  # nested wrappers: \text{\textbf{5}}
        previous, text = text, _TEXT_WRAPPERS.sub(r"\1", text)
    text = _SPACE.sub("", text).rstrip(".")
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")
    if _NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            text = str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    return text or None


def majority_vote(keys: Sequence[str | None], correct: Sequence[bool]) -> float:
    """Score of a majority vote over one set of samples (see the module doc for ties).

    Args:
        keys: each sample's answer class (:func:`answer_key`), None for no answer.
        correct: each sample's correctness.

    Returns the mean correctness of the most frequent classes (1.0 / 0.0 without a
    tie), or 0.0 when no sample has an answer.
    """
    if len(keys) != len(correct):
        raise ValueError(f"keys ({len(keys)}) and correct ({len(correct)}) differ in length")
    counts: dict[str, int] = {}
    hits: dict[str, int] = {}
    for key, ok in zip(keys, correct):
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        hits[key] = hits.get(key, 0) + bool(ok)
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [key for key, count in counts.items() if count == top]
    return sum(hits[key] / counts[key] for key in tied) / len(tied)


def maj_at_k(keys: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """maj@k of one example: mean majority-vote score over ``n // k`` disjoint blocks of k."""
    k = _check_count(k, "k", 1)
    n = len(keys)
    if len(correct) != n:
        raise ValueError(f"keys ({n}) and correct ({len(correct)}) differ in length")
    if k > n:
        raise ValueError(f"maj@{k} needs at least k = {k} samples per example, got n = {n}")
    blocks = n // k
    return sum(majority_vote(keys[b * k : (b + 1) * k], correct[b * k : (b + 1) * k]) for b in range(blocks)) / blocks


@dataclass
class ExampleStats:
    """The samples of one example, in sample order, as the metrics need them."""

    correct: list[bool]
    """Correctness of each sample."""
    keys: list[str | None] = field(default_factory=list)
    """Answer class of each sample (for maj@k); empty if maj@k is not wanted."""
    scores: list[float] = field(default_factory=list)
    """Raw reward score of each sample (None counted as 0); empty if not wanted."""
    completion_tokens: list[int] = field(default_factory=list)
    """Generated tokens of each sample; empty if unknown."""
    truncated: list[bool] = field(default_factory=list)
    """Whether each sample stopped at the token limit; empty if unknown."""


def metric_names(ks: Iterable[int], maj_ks: Iterable[int]) -> list[str]:
    """Names of the accuracy metrics in summary order: pass@1, pass@k..., maj@k..."""
    names = ["pass@1"]
    names += [f"pass@{k}" for k in ks if k != 1]
    names += [f"maj@{k}" for k in maj_ks]
    return names


def example_metrics(stats: ExampleStats, ks: Iterable[int], maj_ks: Iterable[int]) -> dict[str, float]:
    """pass@1, pass@k for each k, maj@k for each maj k of one example."""
    n = len(stats.correct)
    c = sum(bool(x) for x in stats.correct)
    result = {"pass@1": pass_at_1(stats.correct)}
    for k in ks:
        if k != 1:
            result[f"pass@{k}"] = pass_at_k(n, c, k)
    maj_ks = list(maj_ks)
    if maj_ks and len(stats.keys) != n:
        raise ValueError(f"maj@k needs one answer key per sample: {len(stats.keys)} keys for {n} samples")
    for k in maj_ks:
        result[f"maj@{k}"] = maj_at_k(stats.keys, stats.correct, k)
    return result


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean of ``values``: sample std (N - 1) / sqrt(N); None when N < 2."""
    count = len(values)
    if count < 2:
        return None
    mean = sum(values) / count
    return math.sqrt(sum((x - mean) ** 2 for x in values) / (count - 1) / count)


def aggregate(examples: Sequence[ExampleStats], ks: Iterable[int], maj_ks: Iterable[int]) -> dict:
    """Benchmark-level summary: every metric averaged over examples, plus counts.

    Returns a dict with ``examples``, ``samples``, ``n_min``/``n_max`` (samples per
    example), the metrics of :func:`metric_names` and their ``<metric>_stderr``
    (standard error over examples, see the module doc), and when available
    ``mean_score``, ``answer_rate`` (samples with an extracted answer),
    ``mean_completion_tokens`` and ``truncation_rate`` (all over samples).
    """
    ks, maj_ks = list(ks), list(maj_ks)
    if not examples:
        raise ValueError("cannot aggregate zero examples")
    per_example = [example_metrics(e, ks, maj_ks) for e in examples]
    sizes = [len(e.correct) for e in examples]
    row: dict = {"examples": len(examples), "samples": sum(sizes), "n_min": min(sizes), "n_max": max(sizes)}
    for name in metric_names(ks, maj_ks):
        values = [m[name] for m in per_example]
        row[name] = _mean(values)
        row[f"{name}_stderr"] = stderr(values)
    scores = [s for e in examples for s in e.scores]
    if scores:
        row["mean_score"] = _mean(scores)
    if all(len(e.keys) == len(e.correct) for e in examples):
        row["answer_rate"] = _mean([key is not None for e in examples for key in e.keys])
    tokens = [t for e in examples for t in e.completion_tokens]
    if tokens:
        row["mean_completion_tokens"] = _mean(tokens)
    truncated = [t for e in examples for t in e.truncated]
    if truncated:
        row["truncation_rate"] = _mean(truncated)
    return row


_AVERAGED = ("mean_score", "answer_rate", "mean_completion_tokens", "truncation_rate")


def summarize(benchmarks: Mapping[str, Sequence[ExampleStats]], ks: Iterable[int], maj_ks: Iterable[int]) -> dict:
    """``{"benchmarks": {name: row}, "overall": row, "all": row}`` (see module doc).

    "overall" averages the benchmark rows with equal weight (macro); "all" aggregates
    all examples together (micro). With one benchmark both equal its row.
    """
    ks, maj_ks = list(ks), list(maj_ks)
    rows = {name: aggregate(examples, ks, maj_ks) for name, examples in benchmarks.items() if examples}
    if not rows:
        raise ValueError("no examples to summarise")
    overall: dict = {
        "benchmarks": len(rows),
        "examples": sum(r["examples"] for r in rows.values()),
        "samples": sum(r["samples"] for r in rows.values()),
    }
    for name in [*metric_names(ks, maj_ks), *_AVERAGED]:
        values = [r[name] for r in rows.values() if name in r]
        if len(values) == len(rows):
            overall[name] = _mean(values)
    for name in metric_names(ks, maj_ks):
        errors = [r[f"{name}_stderr"] for r in rows.values()]
        overall[f"{name}_stderr"] = None if None in errors else math.sqrt(sum(e * e for e in errors)) / len(errors)
    pooled = aggregate([e for examples in benchmarks.values() for e in examples], ks, maj_ks)
    return {"benchmarks": rows, "overall": overall, "all": pooled}

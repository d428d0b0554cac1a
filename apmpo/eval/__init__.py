"""Evaluation: Pass@1 / pass@k / maj@k of a model on benchmark files, resumable.

- :mod:`apmpo.eval.metrics`: the estimators (pure functions);
- :mod:`apmpo.eval.harness`: :func:`evaluate` (model x benchmarks -> records and
  summary) and :func:`evaluate_examples` (in-memory examples, e.g. a trainer's
  held-out split);
- :mod:`apmpo.eval.suites`: ``--data path[:name]`` specs and suite YAML files (shipped,
  local or Hub data);
- :mod:`apmpo.eval.protocols`: ``--protocol greedy`` / ``r1``;
- :mod:`apmpo.eval.tables`: the paper-style table (mean ± standard error) and timing line;
- :mod:`apmpo.eval.compare`: ``apmpo eval compare``, paired bootstrap differences of two runs;
- :mod:`apmpo.eval.records`: the kill-safe records file;
- :mod:`apmpo.eval.cli`: the ``apmpo eval`` subcommand.

Importing this package does not import transformers (the model code is loaded on
first use).
"""

from apmpo.eval.harness import (
    Benchmark,
    EvalResult,
    EvalSettings,
    evaluate,
    evaluate_examples,
    format_table,
    load_benchmark,
    load_suite_benchmarks,
    resolve_reward,
    summarize_records,
)
from apmpo.eval.metrics import answer_key, maj_at_k, majority_vote, pass_at_1, pass_at_k
from apmpo.eval.suites import BenchmarkSpec, Suite, load_suite, parse_data_spec

__all__ = [
    "Benchmark",
    "BenchmarkSpec",
    "EvalResult",
    "EvalSettings",
    "Suite",
    "answer_key",
    "evaluate",
    "evaluate_examples",
    "format_table",
    "load_benchmark",
    "load_suite",
    "load_suite_benchmarks",
    "maj_at_k",
    "majority_vote",
    "parse_data_spec",
    "pass_at_1",
    "pass_at_k",
    "resolve_reward",
    "summarize_records",
]

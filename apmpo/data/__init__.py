"""Data: example loaders for local files, prompt rendering, synthetic task generators.

- :func:`load_examples`: JSONL / JSON / Parquet / CSV -> :class:`ExampleSet` of dicts
  with "prompt", "answer" and the file's other columns (reward keyword arguments);
  also a shipped file (``shipped:math500``) or a Hugging Face dataset
  (``hf:OWNER/NAME[@CONFIG]:SPLIT``), see :func:`resolve_data_reference`.
- :func:`shipped_path` / :func:`shipped_names`: the benchmark and training files
  shipped with the package (MATH500, AIME24/25, AMC23, OlympiadBench, MATH train, GSM8K).
- :func:`render_prompt` / :func:`build_messages`: template + optional system prompt,
  chat-template aware.
- :mod:`apmpo.data.tasks`: seeded arithmetic generators with disjoint train/eval splits
  (registered, with the other built-in tasks, in :data:`apmpo.tasks.BUILTIN_TASKS`);
  :mod:`apmpo.data.sql`: text-to-SQL examples on SQLite.
"""

from apmpo.data.answers import AnswerError, answer_after_marker, last_boxed, normalize_answer
from apmpo.data.hub import HubDataset, HubUnavailableError
from apmpo.data.loaders import ExampleSet, SkippedRow, load_examples
from apmpo.data.prompts import (
    PromptFormat,
    build_messages,
    format_template,
    render_prompt,
    render_prompts,
    template_fields,
    uses_chat_template,
    validate_template,
)
from apmpo.data.shipped import shipped_names, shipped_path
from apmpo.data.sources import data_reference_problem, resolve_data_reference
from apmpo.data.sql import load_sql_examples
from apmpo.data.tasks import TaskSpec, problem_split

__all__ = [
    "AnswerError",
    "ExampleSet",
    "HubDataset",
    "HubUnavailableError",
    "PromptFormat",
    "SkippedRow",
    "TaskSpec",
    "answer_after_marker",
    "build_messages",
    "data_reference_problem",
    "format_template",
    "last_boxed",
    "load_examples",
    "load_sql_examples",
    "normalize_answer",
    "problem_split",
    "render_prompt",
    "render_prompts",
    "resolve_data_reference",
    "shipped_names",
    "shipped_path",
    "template_fields",
    "uses_chat_template",
    "validate_template",
]

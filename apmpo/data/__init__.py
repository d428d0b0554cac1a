"""Data: example loaders for local files, prompt rendering, built-in synthetic tasks.

- :func:`load_examples`: JSONL / JSON / Parquet / CSV -> :class:`ExampleSet` of dicts
  with "prompt", "answer" and the file's other columns (reward keyword arguments);
  also a shipped file (``shipped:math500``) or a Hugging Face dataset
  (``hf:OWNER/NAME[@CONFIG]:SPLIT``), see :func:`resolve_data_reference`.
- :func:`shipped_path` / :func:`shipped_names`: the benchmark and training files
  shipped with the package (MATH500, AIME24/25, AMC23, OlympiadBench, MATH train, GSM8K).
- :func:`render_prompt` / :func:`build_messages`: template + optional system prompt,
  chat-template aware; messages with image parts for vision-language processors.
- :data:`BUILTIN_TASKS` / :func:`make_task_examples`: seeded arithmetic tasks with
  disjoint train/eval splits, verified by exact match.
"""

from apmpo.data.answers import AnswerError, answer_after_marker, last_boxed, normalize_answer
from apmpo.data.hub import HubDataset, HubUnavailableError
from apmpo.data.loaders import ExampleSet, SkippedRow, load_examples
from apmpo.data.shipped import shipped_names, shipped_path
from apmpo.data.sources import data_reference_problem, resolve_data_reference
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
from apmpo.data.tasks import BUILTIN_TASKS, TaskSpec, get_task, make_task_examples, problem_split
from apmpo.data.sql import SQL_TASK, load_sql_examples

# The SQL task lives in sql.py (it imports TaskSpec from tasks.py); registered here to avoid a cycle.
BUILTIN_TASKS[SQL_TASK.name] = SQL_TASK
# The geometry tasks (synthetic diagrams, a local Geometry3K) live in apmpo.multimodal, likewise.
from apmpo.multimodal.tasks import geometry_task_specs

BUILTIN_TASKS.update((spec.name, spec) for spec in geometry_task_specs())

__all__ = [
    "AnswerError",
    "BUILTIN_TASKS",
    "ExampleSet",
    "HubDataset",
    "HubUnavailableError",
    "SQL_TASK",
    "PromptFormat",
    "SkippedRow",
    "TaskSpec",
    "answer_after_marker",
    "build_messages",
    "data_reference_problem",
    "format_template",
    "get_task",
    "last_boxed",
    "load_examples",
    "load_sql_examples",
    "make_task_examples",
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

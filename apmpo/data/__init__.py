"""Data: example loaders for local files, prompt rendering, synthetic task generators.

- :func:`load_examples`: JSONL / JSON / Parquet / CSV -> :class:`ExampleSet` of dicts
  with "prompt", "answer" and the file's other columns (reward keyword arguments).
- :func:`render_prompt` / :func:`build_messages`: template + optional system prompt,
  chat-template aware.
- :mod:`apmpo.data.tasks`: seeded arithmetic generators with disjoint train/eval splits
  (registered, with the other built-in tasks, in :data:`apmpo.tasks.BUILTIN_TASKS`);
  :mod:`apmpo.data.sql`: text-to-SQL examples on SQLite.
"""

from apmpo.data.answers import (
    AnswerError,
    answer_after_marker,
    last_boxed,
    normalize_answer,
)
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
from apmpo.data.sql import load_sql_examples
from apmpo.data.tasks import TaskSpec, problem_split

__all__ = [
    "AnswerError",
    "ExampleSet",
    "PromptFormat",
    "SkippedRow",
    "TaskSpec",
    "answer_after_marker",
    "build_messages",
    "format_template",
    "last_boxed",
    "load_examples",
    "load_sql_examples",
    "normalize_answer",
    "problem_split",
    "render_prompt",
    "render_prompts",
    "template_fields",
    "uses_chat_template",
    "validate_template",
]

"""The SQL task in the trainer and the evaluation harness: configs, two tiny training steps, an eval pass."""

import json
import math
from pathlib import Path

import pytest

from apmpo import tasks
from apmpo.data.sql import SQLBENCH_ROOT, load_sql_examples
from apmpo.trainer.config import load_config, packaged_config, validate_config


@pytest.fixture
def sql_task():
    """The "sql" task of the registry."""
    return tasks.BUILTIN_TASKS["sql"]


@pytest.mark.parametrize("name", ["sql_cpu_demo", "sql_bird_gpu"])
def test_packaged_sql_configs_validate(sql_task, name):
    config = load_config(Path(__file__).parents[2] / "apmpo" / "configs" / f"{name}.yaml")
    validate_config(config)
    assert config.data.train == "sql" and list(config.reward.functions) == ["sql"]
    assert set(config.data.task) <= set(sql_task.options)


def test_make_task_examples_passes_options(sql_task):
    examples = tasks.make_task_examples("sql", "eval", 5, 0, sample_rows=1, instruction="")
    assert len(examples) == 5 and "example row from table" in examples[0]["prompt"]
    with pytest.raises(ValueError, match="unknown option"):
        tasks.make_task_examples("sql", "eval", 5, 0, rows=1)


def half_gold(completions, gold_sql, db_path, **columns):
    """The SQL reward on the gold query for even items and on the completion for odd ones.

    A random tiny model never writes a correct query, so every reward would be 0 and
    nothing would be trained; this gives the batch reward variance while still running
    apmpo.rewards.sql_execution on the columns the trainer passes."""
    from apmpo.rewards import sql_execution

    texts = [gold if i % 2 == 0 else text for i, (text, gold) in enumerate(zip(completions, gold_sql))]
    return sql_execution(texts, gold_sql=gold_sql, db_path=db_path)


def test_two_training_steps_and_eval_on_sqlbench(sql_task, tmp_path):
    from apmpo.trainer.loop import train

    config = load_config(packaged_config("tiny_test"), [
        f"logging.output_dir={tmp_path}", "logging.run_name=sql", "logging.tensorboard=false",
        "logging.progress=none", "logging.sample_every=1", "logging.num_samples=2",
        "model.name=tiny:max_position_embeddings=1536",
        "data.train=sql", "data.task={instruction: ''}", "data.train_size=16", "data.eval_size=4",
        "reward.functions={sql: 0.5, half_gold: 0.5}",
        "reward.kwargs={sql: {comparison: set, query_timeout_s: 1.0}}",
        "steps=2", "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8",
        "optim.micro_batch_size=4", "eval.max_examples=4", "eval.batch_size=4",
    ])
    train(config, reward_functions={"half_gold": half_gold})
    run = tmp_path / "sql"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if m["kind"] == "train"]
    evals = [m for m in metrics if m["kind"] == "eval"]
    assert [m["step"] for m in steps] == [1, 2] and [m["step"] for m in evals] == [0, 2]
    for m in steps:
        assert m["reward/half_gold"] == 0.5 and m["reward/sql"] == 0.0  # random characters are never right
        assert m["trained_rows"] > 0 and m["grad_norm"] > 0 and math.isfinite(m["loss"])
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["prompt"].startswith("Database schema (SQLite):") for s in samples)


def test_eval_harness_scores_sql_examples(sql_task):
    from apmpo.eval.harness import EvalSettings, evaluate_examples
    from apmpo.models.tiny import tiny_model

    examples = list(load_sql_examples(SQLBENCH_ROOT, split="dev", limit=3, instruction=""))
    model, tokenizer = tiny_model(0, max_position_embeddings=1536)
    result = evaluate_examples(model, tokenizer, examples, EvalSettings(n=1, max_new_tokens=6, batch_size=3),
                               reward="sql")
    assert result.metric("pass@1") == 0.0  # six random characters are never the right query
    assert len(result.records) == 3
    assert all("reason" in r for r in result.records)

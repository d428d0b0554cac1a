"""Execution accuracy through apmpo.rewards.sql_execution: gold scores 1, perturbations 0."""

import json
import re

import pytest

from apmpo import rewards
from apmpo.data.sql import (
    SQLBENCH_ROOT,
    evaluate_sql,
    evaluate_sql_predictions,
    load_sql_examples,
    main,
    read_predictions,
)


@pytest.fixture(scope="module")
def benchmark():
    """Every shipped question, train and dev, with its stored gold result."""
    examples = []
    for split, name in (("train", "train_spider.json"), ("dev", "dev.json")):
        rows = json.loads((SQLBENCH_ROOT / name).read_text())
        for example, row in zip(load_sql_examples(SQLBENCH_ROOT, split=split), rows):
            examples.append({**example, "gold_result": row["gold_result"]})
    return examples


def test_gold_scores_one_through_the_reward(benchmark):
    fenced = [f"The query:\n```sql\n{e['gold_sql']};\n```" for e in benchmark]
    scores = rewards.sql_execution(fenced, gold_sql=[e["gold_sql"] for e in benchmark],
                                   db_path=[e["db_path"] for e in benchmark])
    assert scores == [1.0] * len(benchmark)
    for comparison in ("multiset", "set"):
        result = evaluate_sql(benchmark, [e["gold_sql"] for e in benchmark], comparison=comparison)
        assert result.accuracy == 1.0 and result.num_examples == len(benchmark)
        assert all(reason.startswith("correct") for reason in result.reasons)


def test_another_questions_gold_scores_zero(benchmark):
    """Each gold query against the gold of the next question on the same database with another result."""
    predictions = []
    for i, example in enumerate(benchmark):
        others = [o for o in benchmark[i + 1:] + benchmark[:i]
                  if o["db_id"] == example["db_id"]
                  and sorted(map(tuple, o["gold_result"])) != sorted(map(tuple, example["gold_result"]))]
        predictions.append(others[0]["gold_sql"])
    result = evaluate_sql(benchmark, predictions)
    assert result.scores == [0.0] * len(benchmark)
    assert all(reason.startswith("wrong") for reason in result.reasons)


def test_duplicated_rows_multiset_versus_set(benchmark):
    doubled = [f"SELECT * FROM ({e['gold_sql']}) UNION ALL SELECT * FROM ({e['gold_sql']})" for e in benchmark]
    assert evaluate_sql(benchmark, doubled, comparison="multiset").accuracy == 0.0
    assert evaluate_sql(benchmark, doubled, comparison="set").accuracy == 1.0


def test_reversed_order_counts_only_when_the_gold_orders(benchmark):
    ordered = [e for e in benchmark
               if re.search(r"ORDER BY [^ ]+ DESC$", e["gold_sql"]) and len(e["gold_result"]) >= 2]
    assert len(ordered) >= 5
    flipped = [e["gold_sql"][: -len("DESC")] + "ASC" for e in ordered]
    assert evaluate_sql(ordered, flipped).accuracy == 0.0
    assert evaluate_sql(ordered, flipped, comparison="set").accuracy == 1.0


def test_literal_perturbation_scores_zero(benchmark):
    filtered = [e for e in benchmark if re.search(r"WHERE \w+ = '[^']+'$", e["gold_sql"])][:20]
    assert len(filtered) >= 10
    perturbed = [re.sub(r"= '([^']+)'$", r"= '\1x'", e["gold_sql"]) for e in filtered]
    assert evaluate_sql(filtered, perturbed).scores == [0.0] * len(filtered)


def test_groups_and_summary(benchmark):
    dev = [e for e in benchmark if e["db_id"] == "shop"][:6]
    predictions = [e["gold_sql"] for e in dev[:3]] + ["SELECT 1", "not sql at all", ""]
    result = evaluate_sql(dev, predictions)
    assert result.scores == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert result.accuracy == 0.5 and result.by_group["db_id=shop"] == {"accuracy": 0.5, "count": 6.0}
    assert result.summary() == "execution accuracy 0.5000 (3/6, multiset comparison)"
    assert "no SQL found" in result.reasons[5]
    assert set(result.to_dict()) == {"accuracy", "num_examples", "comparison", "by_group"}


def test_evaluate_sql_errors(benchmark):
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        evaluate_sql(benchmark[:1], ["SELECT 1", "SELECT 2"])
    with pytest.raises(ValueError, match="no examples to evaluate"):
        evaluate_sql([], [])
    with pytest.raises(ValueError, match="example 1: field 'db_path' missing"):
        evaluate_sql([{"gold_sql": "SELECT 1"}], ["SELECT 1"])
    with pytest.raises(TypeError, match="unknown option"):
        evaluate_sql(benchmark[:1], ["SELECT 1"], query_timeout=3)
    with pytest.raises(ValueError, match="comparison"):
        evaluate_sql(benchmark[:1], ["SELECT 1"], comparison="bag")


# ---------------------------------------------------------------------------- prediction files


def test_read_predictions_formats(tmp_path):
    spider = tmp_path / "pred.txt"
    spider.write_text("SELECT 1\tconcerts\nSELECT name FROM singer\n\n")
    assert read_predictions(spider) == ["SELECT 1", "SELECT name FROM singer", ""]
    bird = tmp_path / "predict_dev.json"
    bird.write_text(json.dumps({"1": "SELECT 2\t----- bird -----\tconcerts", "0": "SELECT 1\t----- bird -----\tc"}))
    assert read_predictions(bird) == ["SELECT 1", "SELECT 2"]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["SELECT 1", "SELECT 2"]))
    assert read_predictions(listed) == ["SELECT 1", "SELECT 2"]
    lines = tmp_path / "samples.jsonl"
    lines.write_text(json.dumps({"completion": "```sql\nSELECT 1\n```"}) + "\n" + json.dumps({"sql": "SELECT 2"}) + "\n")
    assert read_predictions(lines) == ["```sql\nSELECT 1\n```", "SELECT 2"]


def test_read_predictions_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_predictions(tmp_path / "missing.txt")
    gap = tmp_path / "gap.json"
    gap.write_text(json.dumps({"0": "SELECT 1", "2": "SELECT 2"}))
    with pytest.raises(ValueError, match="keys 0..1 without gaps"):
        read_predictions(gap)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"first": "SELECT 1"}))
    with pytest.raises(ValueError, match="BIRD predictions need keys 0..n-1, got 'first'"):
        read_predictions(named)
    typed = tmp_path / "typed.json"
    typed.write_text(json.dumps(["SELECT 1", 7]))
    with pytest.raises(ValueError, match="entry 1: expected a string, got int"):
        read_predictions(typed)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="malformed JSON"):
        read_predictions(broken)
    lines = tmp_path / "rows.jsonl"
    lines.write_text(json.dumps({"answer": "SELECT 1"}) + "\n")
    with pytest.raises(ValueError, match="line 1: no 'prediction', 'completion' or 'sql' field"):
        read_predictions(lines)
    lines.write_text(json.dumps({"prediction": 3}) + "\n")
    with pytest.raises(ValueError, match="line 1, field 'prediction': expected a string, got int"):
        read_predictions(lines)
    other = tmp_path / "pred.csv"
    other.write_text("x")
    with pytest.raises(ValueError, match="unsupported predictions file '.csv'"):
        read_predictions(other)


def test_evaluate_a_predictions_file_on_a_spider_folder(spider_root, tmp_path):
    pred = tmp_path / "pred.sql"
    pred.write_text("SELECT COUNT(*) FROM singer\nSELECT name FROM singer\n")
    result = evaluate_sql_predictions(spider_root, pred, split="train")
    assert result.scores == [1.0, 0.0]
    assert evaluate_sql_predictions(spider_root, None, split="train").accuracy == 1.0
    assert evaluate_sql_predictions(spider_root, ["SELECT 4"], split="dev").accuracy == 0.0
    pred.write_text("SELECT 1\n")
    with pytest.raises(ValueError, match=r"pred\.sql: 1 predictions but .*train_spider\.json has 2 questions"):
        evaluate_sql_predictions(spider_root, pred, split="train")


def test_command_line(bird_root, tmp_path, capsys):
    out = tmp_path / "out" / "scores.json"
    assert main(["eval", "--data", str(bird_root), "--gold", "--comparison", "set", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "execution accuracy 1.0000 (2/2, set comparison)" in printed and "difficulty=simple" in printed
    saved = json.loads(out.read_text())
    assert saved["accuracy"] == 1.0 and saved["scores"] == [1.0, 1.0] and len(saved["reasons"]) == 2
    assert main(["eval", "--data", str(tmp_path / "nowhere"), "--gold"]) == 2
    assert "error: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--data", str(bird_root)])
    with pytest.raises(SystemExit):
        main([])


def test_export_then_generic_loader_and_reward(bird_root, tmp_path, capsys):
    """Exported JSON lines are read by apmpo.data.load_examples and carry the reward's columns."""
    from apmpo.data.loaders import load_examples

    out = tmp_path / "bird_dev.jsonl"
    assert main(["export", "--data", str(bird_root), "--out", str(out), "--sample-rows", "1"]) == 0
    assert "2 examples" in capsys.readouterr().out
    loaded = load_examples(out)
    direct = load_sql_examples(bird_root, sample_rows=1)
    assert list(loaded) == list(direct)
    assert loaded.prompt_column == "prompt" and loaded.answer_source == "answer"
    gold = [e["answer"] for e in loaded]
    assert rewards.sql_execution(gold, **{k: [e[k] for e in loaded] for k in ("gold_sql", "db_path")}) == [1.0, 1.0]
    assert main(["export", "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2

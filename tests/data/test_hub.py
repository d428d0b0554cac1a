"""hf:OWNER/NAME[@CONFIG]:SPLIT references: parsing, local datasets folders, errors; nothing is downloaded."""

from __future__ import annotations

import json

import pytest

from apmpo.data import HubDataset, HubUnavailableError, load_examples
from apmpo.data.sources import data_reference_problem


@pytest.mark.parametrize(
    "text, repo, config, split",
    [
        ("hf:HuggingFaceH4/MATH-500@default:test", "HuggingFaceH4/MATH-500", "default", "test"),
        ("hf:openai/gsm8k@main:train", "openai/gsm8k", "main", "train"),
        ("hf:yentinglin/aime_2025:train", "yentinglin/aime_2025", None, "train"),
        ("hf:Hothan/OlympiadBench@OE_TO_maths_en_COMP:train", "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
    ],
)
def test_parse(text, repo, config, split):
    dataset = HubDataset.parse(text)
    assert (dataset.repo, dataset.config, dataset.split) == (repo, config, split)
    assert dataset.text == text


@pytest.mark.parametrize(
    "text, words",
    [
        ("hf:HuggingFaceH4/MATH-500", "no split"),
        ("hf:HuggingFaceH4/MATH-500@default", "no split"),
        ("hf:HuggingFaceH4/MATH-500:test[:100]", "slices such as train[:100] are not accepted"),
        ("hf:HuggingFaceH4/MATH-500@:test", "empty config"),
        ("hf:@default:test", "empty dataset id"),
        ("hf:not a repo:test", "neither OWNER/NAME nor an existing local folder"),
    ],
)
def test_parse_errors_name_the_syntax(text, words):
    with pytest.raises(ValueError) as info:
        HubDataset.parse(text)
    assert words in str(info.value) and "hf:OWNER/NAME[@CONFIG]:SPLIT" in str(info.value)
    assert data_reference_problem(text) == str(info.value)


def _dataset_folder(root, rows_by_split):
    """A folder of JSON-lines files, one per split, as a Hub dataset repository holds them."""
    root.mkdir(parents=True)
    for split, rows in rows_by_split.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


ROWS = [{"question": "What is 2 + 3?", "final_answer": ["5"], "level": 1},
        {"question": "What is 7 * 6?", "final_answer": ["42"], "level": 2}]


def test_a_datasets_folder_through_load_dataset_with_column_mapping(tmp_path, monkeypatch, offline_hub):
    _dataset_folder(tmp_path / "org" / "mini-bench", {"test": ROWS, "train": ROWS[:1]})
    monkeypatch.chdir(tmp_path)  # "org/mini-bench" names the local folder, as a Hub id would name the repo
    examples = load_examples("hf:org/mini-bench@default:test")
    assert [e["answer"] for e in examples] == ["5", "42"] and examples[0]["prompt"] == "What is 2 + 3?"
    assert examples.path == "hf:org/mini-bench@default:test" and examples.answer_source == "final_answer"
    assert examples[1]["level"] == 2 and examples[1]["final_answer"] == ["42"]  # other columns kept
    assert len(load_examples(f"hf:{tmp_path}/org/mini-bench:train")) == 1       # absolute folder, no config
    assert len(load_examples("hf:org/mini-bench:test", limit=1)) == 1
    assert list(offline_hub.iterdir())  # the Arrow cache went to the test's folder


def test_saved_to_disk_folders(tmp_path, offline_hub):
    import datasets

    dd = datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS), "train": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert [e["answer"] for e in load_examples(f"hf:{tmp_path}/dd:test")] == ["5", "42"]
    with pytest.raises(ValueError, match="no split 'validation' in .*; splits: test, train"):
        load_examples(f"hf:{tmp_path}/dd:validation")
    with pytest.raises(ValueError, match="has no configs; drop '@x'"):
        load_examples(f"hf:{tmp_path}/dd@x:test")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    assert len(load_examples(f"hf:{tmp_path}/one:train")) == 2
    with pytest.raises(ValueError, match="holds one split, 'train'"):
        load_examples(f"hf:{tmp_path}/one:test")


def test_bad_config_split_and_column_are_named(tmp_path, monkeypatch, offline_hub):
    _dataset_folder(tmp_path / "org" / "mini-bench", {"test": ROWS})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"hf:org/mini-bench@nope:test: cannot load this dataset: .*'nope'.*default"):
        load_examples("hf:org/mini-bench@nope:test")
    with pytest.raises(ValueError, match=r"hf:org/mini-bench:dev: cannot load this dataset: .*split.*test"):
        load_examples("hf:org/mini-bench:dev")
    with pytest.raises(ValueError) as info:
        load_examples("hf:org/mini-bench:test", prompt_column="problem")
    assert str(info.value).startswith("hf:org/mini-bench:test: columns, field 'problem': no column 'problem'")
    assert "available columns: question, final_answer, level" in str(info.value)
    with pytest.raises(ValueError, match="neither OWNER/NAME nor an existing local folder"):
        load_examples("hf:./missing-folder:test")


def test_unreachable_hub_names_the_shipped_fallback(offline_hub):
    with pytest.raises(HubUnavailableError) as info:
        load_examples("hf:HuggingFaceH4/MATH-500@default:test")
    message = str(info.value)
    assert message.startswith("hf:HuggingFaceH4/MATH-500@default:test: the Hugging Face Hub cannot be reached")
    assert "not in the local datasets cache" in message
    assert "shipped:NAME; shipped: aime24, aime25, amc23, gsm8k/test, gsm8k/train, math500" in message


def test_training_config_accepts_hub_and_shipped_references(tmp_path, monkeypatch, offline_hub):
    from apmpo.trainer.config import ConfigError, TrainConfig, apply_overrides, validate_config

    _dataset_folder(tmp_path / "org" / "train-set", {"train": [{"problem": "1+1?", "answer": "2"}]})
    monkeypatch.chdir(tmp_path)
    ok = apply_overrides(TrainConfig(), ["data.train=hf:org/train-set:train", "data.eval=shipped:gsm8k/test",
                                         "reward.functions={math: 1.0}", "model.name=tiny"])
    validate_config(ok)
    bad = apply_overrides(TrainConfig(), ["data.train=hf:org/train-set", "data.eval=shipped:gsm8k",
                                          "reward.functions={math: 1.0}", "model.name=tiny"])
    with pytest.raises(ConfigError) as info:
        validate_config(bad)
    assert "data.train: hf:org/train-set: no split" in str(info.value)
    assert "data.eval: shipped:gsm8k: the shipped dataset 'gsm8k' has several files" in str(info.value)

"""End to end on CPU: APMPO steps with the tiny random VLM on geometry images, `apmpo eval`, bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from apmpo.multimodal import ImageError, tiny_vlm, write_geometry_dataset
from apmpo.trainer.config import config_from_dict, load_config, packaged_config
from apmpo.trainer.setup import load_data
from tests.helpers import write_jsonl

from .conftest import png_bytes


def first_letter_parity(completions, **columns):
    """A reward that differs within groups (so rows are trained on) and depends only on the text."""
    return [float(ord(c[0]) % 2) if c else 0.0 for c in completions]


def _config(tmp_path, **sections):
    base = {
        "seed": 0, "steps": 2,
        "model": {"name": "tiny-vlm", "num_threads": 1},
        "data": {"train": "geometry", "train_size": 16, "eval_size": 3, "task": {"image_size": 112}},
        "rollout": {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 4},
        "algorithm": {"name": "apmpo", "beta": 0.01, "mini_batches": 2},
        "optim": {"lr": 1e-3, "micro_batch_size": 4},
        "logging": {"output_dir": str(tmp_path), "run_name": "vlm", "tensorboard": False, "progress": "none",
                    "plot": False, "sample_every": 1, "num_samples": 2},
        "checkpoint": {"every": 1, "keep_last": 2},
        "eval": {"at_start": True, "at_end": True, "max_examples": 3, "batch_size": 3},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return config_from_dict(base)


def test_two_apmpo_steps_train_the_vision_tower_and_checkpoint_a_vlm(tmp_path):
    from apmpo.models import load_model_and_tokenizer
    from apmpo.trainer import train

    config = _config(tmp_path, reward={"functions": {"parity": 1.0}},
                     algorithm={"dynamic_sampling": True, "max_sampling_rounds": 3})  # rollouts are concatenated too
    result = train(config, reward_functions={"parity": first_letter_parity})
    assert result.steps == 2 and len(result.history) == 2
    assert max(h["sampling_rounds"] for h in result.history) > 1
    assert result.eval_before is not None and result.eval_after is not None
    assert sum(h["trained_rows"] for h in result.history) > 0
    for h in result.history:  # APMPO's controllers from each step's batch statistics (gamma 0.8, eps 0.2-0.4)
        assert h["p"] == pytest.approx(math.exp(-0.8 * h["mu_r"]), rel=1e-6)
        fss = h["mu_r"] / (h["sigma_r"] + 1e-6)
        assert h["eps_high"] == pytest.approx(0.2 + 0.2 * math.tanh(fss), rel=1e-6)
    assert any("kl" in k for k in result.history[0])  # beta > 0: the reference pass ran with the images too
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and "Choices:" in samples[0]["prompt"]

    model, processor = load_model_and_tokenizer(str(result.checkpoint))
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration" and processor.image_processor is not None
    initial, _ = tiny_vlm(seed=0)
    before, after = initial.state_dict(), model.state_dict()
    vision = [k for k in before if ".visual." in k]
    assert vision and any(not torch.equal(before[k], after[k]) for k in vision)  # gradients reached the images


def test_eval_cli_on_generated_geometry_files_and_bad_images(tmp_path, capsys):
    from apmpo.eval.cli import main

    data = write_geometry_dataset(tmp_path / "geo", "eval", 4, seed=0, image_size=64)
    out = tmp_path / "out"
    args = ["--model", "tiny-vlm", "--data", f"{data}:geo", "--reward", "exact", "--max-new-tokens", "4",
            "--max-pixels", str(56 * 56), "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["prompt"].count("<|image_pad|>") == 1 for r in records)
    assert [r["reference"] for r in records] == [json.loads(line)["answer"] for line in data.read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["geo"]["examples"] == 4

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[2]["images"] = ["images/nope.png"]
    broken = write_jsonl(tmp_path / "geo" / "broken.jsonl", rows)
    assert main(["--model", "tiny-vlm", "--data", f"{broken}:geo", "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "broken.jsonl: geo example 2, field 'images': image file" in capsys.readouterr().err
    assert main(["--model", "tiny", "--data", f"{data}:geo", "--out", str(tmp_path / "o3"), "--no-progress"]) == 2
    assert "but the model is text-only" in capsys.readouterr().err


def test_trainer_bad_images_error_or_are_skipped_and_counted(tmp_path):
    from apmpo.sampling import prompt_encoder_for

    (tmp_path / "ok.png").write_bytes(png_bytes())
    (tmp_path / "bad.png").write_text("not a png")
    rows = [{"problem": f"Find x ({i}).", "answer": "A", "image": "ok.png"} for i in range(4)]
    rows[1]["image"] = "bad.png"
    rows[3]["image"] = "gone.png"
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    config = _config(tmp_path, data={"train": str(train_file), "eval": None, "train_size": None},
                     reward={"functions": {"exact": 1.0}})
    _, processor = tiny_vlm(seed=0)
    encoder = prompt_encoder_for(processor)
    with pytest.raises(ImageError, match=r"train.jsonl: data.train example 2, field 'image': image .*bad.png cannot be "
                                         r"decoded.*on_bad_row='skip'"):
        load_data(config.data, encoder, 0)
    config.data.on_bad_row = "skip"
    data = load_data(config.data, encoder, 0)
    assert [ex["prompt"] for ex in data.train] == ["Find x (0).", "Find x (2)."]
    assert "2 images from column 'image', 2 rows skipped for bad images (first: data.train example 2" in data.description[0]
    assert all(p.count("<|image_pad|>") == 1 for p in data.train_prompts)

    config.data.image_column = "picture"
    with pytest.raises(ImageError, match="no image column 'picture'; available columns: prompt, answer, image"):
        load_data(config.data, prompt_encoder_for(processor, image_column="picture"), 0)


def test_text_model_on_image_data_and_packaged_configs(tmp_path):
    from apmpo.trainer import train

    text_model = _config(tmp_path, model={"name": "tiny"})
    with pytest.raises(ImageError, match="the examples have images \\(column 'images'\\) but the model is text-only"):
        train(text_model)
    cpu = load_config(packaged_config("geometry_tiny_test"))
    assert cpu.model.name.startswith("tiny-vlm") and cpu.data.train == "geometry"
    gpu = load_config(packaged_config("geometry_qwen2_5_vl_gpu"))
    assert gpu.data.train == "geometry3k" and "Qwen2.5-VL" in gpu.model.name

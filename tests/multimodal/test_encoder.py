"""Prompt encoders, the tiny VLM and its processor, and the image inputs in generation and log-probs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from apmpo.multimodal import ImageError, load_vision_model, tiny_vlm
from apmpo.multimodal.processor import parse_tiny_vlm_spec
from apmpo.sampling import TextPromptEncoder, VisionPromptEncoder, prompt_encoder_for
from apmpo.sampling.rollout import generate_rollouts
from apmpo.sampling.settings import ENGINES, Sampling
from apmpo.trainer.logprobs import completion_log_probs

PAD = "<|image_pad|>"


def _row(text, *sizes):
    return {"prompt": text, "answer": "A", "images": [Image.new("RGB", s, "white") for s in sizes]}


def test_encoder_choice(vlm):
    _, processor = vlm
    assert isinstance(prompt_encoder_for(processor), VisionPromptEncoder)
    text = prompt_encoder_for(processor.tokenizer)
    assert isinstance(text, TextPromptEncoder) and prompt_encoder_for(text) is text
    with pytest.raises(ValueError, match="image_column='images' given but the model is text-only"):
        prompt_encoder_for(processor.tokenizer, image_column="images")
    with pytest.raises(ImageError, match="the examples have images \\(column 'images'\\) but the model is text-only"):
        text.prepare([_row("p", (30, 30))])


def test_render_places_images_at_markers_or_first(vlm):
    encoder = VisionPromptEncoder(vlm[1])
    first = encoder.render(_row("Find x.", (30, 30)), system_prompt="Be brief.")
    assert first == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|>"
                     "<|vision_end|>Find x.<|im_end|>\n<|im_start|>assistant\n")
    between = encoder.render(_row("Compare <image> with <image>.", (30, 30), (40, 40)))
    assert "Compare <|vision_start|><|image_pad|><|vision_end|> with <|vision_start|><|image_pad|><|vision_end|>." in between
    text_only = encoder.render({"prompt": "2+2?", "answer": "4"})
    assert PAD not in text_only and "2+2?" in text_only


@pytest.mark.parametrize(("row", "options", "message"), [
    (_row("<image><image> Find x.", (30, 30)), {}, "example: the text has 2 <image> markers but the row has 1 image"),
    (_row("Find x.", (30, 30)), {"use_chat_template": False},
     r"holds 0 image placeholder\(s\) '<\|image_pad\|>' for 1 image\(s\); the chat template is off"),
    (_row("Find <|image_pad|> x.", (30, 30)), {},
     r"holds 2 image placeholder\(s\) .* for 1 image\(s\); the chat template must render"),
])
def test_render_refuses_prompts_without_the_expected_placeholders(vlm, row, options, message):
    with pytest.raises(ValueError, match=message):
        VisionPromptEncoder(vlm[1]).render(row, **options)


def test_plain_prompts_may_hold_the_placeholder_themselves(vlm):
    encoder = VisionPromptEncoder(vlm[1])
    row = _row("Find x.", (30, 30))
    template = "<|vision_start|><|image_pad|><|vision_end|>{prompt}"
    assert encoder.render(row, template=template, use_chat_template=False).startswith("<|vision_start|>")


def test_encode_splits_images_per_prompt_and_pads_left(vlm):
    _, processor = vlm
    encoder = VisionPromptEncoder(processor)
    rows = [_row("Find x.", (56, 56)), _row("Find the area of the big one.", (112, 112), (56, 28))]
    prompts = [encoder.render(r) for r in rows]
    batch = encoder.encode(prompts, rows)
    merge = processor.image_processor.merge_size ** 2
    assert [e["image_grid_thw"].tolist() for e in batch.extras] == [[[1, 4, 4]], [[1, 8, 8], [1, 2, 4]]]  # (t, h, w); PIL sizes are (w, h)
    for extra in batch.extras:  # pixel rows: one per patch of this prompt's images
        assert extra["pixel_values"].shape[0] == int(extra["image_grid_thw"].prod(-1).sum())
    image_id = processor.tokenizer.convert_tokens_to_ids(PAD)
    counts = (batch.input_ids == image_id).sum(-1).tolist()
    assert counts == [16 // merge, (64 + 8) // merge]
    types = batch.token_inputs["mm_token_type_ids"]
    assert torch.equal(types.bool(), batch.input_ids == image_id)           # aligned with the padded tokens
    assert batch.attention_mask[0, 0] == 0 and batch.attention_mask[:, -1].all()  # left padding
    assert batch.suppress_tokens == sorted({image_id, processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")})
    with pytest.raises(ValueError, match=r"prompt 0: .* tokens \(images included\), more than rollout.max_prompt_tokens=10"):
        encoder.encode(prompts, rows, max_prompt_tokens=10)
    with pytest.raises(ValueError, match=r"prompt 1: the prompt holds 1 image placeholder\(s\) .* for 2 image\(s\)"):
        encoder.encode([prompts[0], prompts[0]], rows)
    with pytest.raises(ImageError, match=r"prompt 0: image file /no/such.png does not exist"):
        encoder.encode(prompts[:1], [{"images": ["/no/such.png"]}])


def test_log_probs_with_images_match_a_full_forward_pass(vlm):
    model, processor = vlm
    encoder = VisionPromptEncoder(processor)
    rows = [_row("Find x.", (56, 84)), _row("Which is larger?", (112, 56))]
    batch = encoder.encode([encoder.render(r) for r in rows], rows)
    rollout = generate_rollouts(model, processor.tokenizer, batch, Sampling(max_new_tokens=5), num_samples=2)
    assert rollout.meta["engine"] == "fast"
    assert len(rollout) == 4 and rollout.token_inputs["mm_token_type_ids"].shape == rollout.prompt_ids.shape
    inputs = rollout.model_inputs()
    assert inputs["pixel_values"].shape[0] == 2 * sum(int(e["image_grid_thw"].prod()) for e in batch.extras)
    assert inputs["mm_token_type_ids"].shape == (4, rollout.prompt_ids.shape[1] + rollout.completion_ids.shape[1])
    out = completion_log_probs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                               rollout.completion_mask, **inputs)
    with torch.no_grad():
        ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
        mask = torch.cat([rollout.prompt_mask, rollout.completion_mask.long()], 1)
        logits = model(input_ids=ids, attention_mask=mask, **inputs).logits.float()
    P = rollout.prompt_ids.shape[1]
    reference = torch.log_softmax(logits[:, P - 1 : -1], -1).gather(-1, rollout.completion_ids[..., None])[..., 0]
    reference = reference * rollout.completion_mask
    torch.testing.assert_close(out.log_probs, reference, atol=1e-5, rtol=1e-5)
    # a micro-batch of one row, re-trimmed, gives the same numbers (padding and image slicing are exact)
    one = rollout.select([3]).trimmed()
    single = completion_log_probs(model, one.prompt_ids, one.prompt_mask, one.completion_ids, one.completion_mask,
                                  **one.model_inputs())
    torch.testing.assert_close(single.log_probs[0, : one.completion_ids.shape[1]],
                               out.log_probs[3, : one.completion_ids.shape[1]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_image_placeholders_are_never_sampled(engine):
    model, processor = tiny_vlm(seed=1)
    image_id = processor.tokenizer.convert_tokens_to_ids(PAD)
    with torch.no_grad():  # make <|image_pad|> by far the most likely next token everywhere
        model.get_output_embeddings().weight[image_id] *= 50
    encoder = VisionPromptEncoder(processor)
    rows = [_row("Find x.", (56, 56))]
    batch = encoder.encode([encoder.render(rows[0])], rows)
    greedy = Sampling(max_new_tokens=6, temperature=0, engine=engine)
    rollout = generate_rollouts(model, processor.tokenizer, batch, greedy, num_samples=1)
    assert rollout.completion_lengths.tolist() == [6] and image_id not in rollout.completion_ids.tolist()[0]
    batch.suppress_tokens = None
    unsuppressed = generate_rollouts(model, processor.tokenizer, batch, greedy, num_samples=1)
    assert image_id in unsuppressed.completion_ids.tolist()[0]  # the check above can fail


def test_tiny_vlm_variants_and_checkpoint_round_trip(tmp_path):
    model, processor = tiny_vlm(seed=0, arch="qwen2_5_vl", max_pixels=56 * 56)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    encoder = VisionPromptEncoder(processor)
    row = _row("Find x.", (200, 200))
    grid = encoder.encode([encoder.render(row)], [row]).extras[0]["image_grid_thw"]
    assert int(grid.prod()) <= 56 * 56 // 14**2  # the pixel budget caps the image
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_vision_model(tmp_path, processor_kwargs={"max_pixels": 28 * 28})
    assert type(loaded).__name__ == type(model).__name__
    assert int(VisionPromptEncoder(loaded_processor).encode([encoder.render(row)], [row]).extras[0]["image_grid_thw"].prod()) == 4
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert parse_tiny_vlm_spec("tiny-vlm:arch=qwen2_5_vl,hidden_size=32") == {"arch": "qwen2_5_vl", "hidden_size": 32}
    with pytest.raises(ValueError, match="tiny-vlm: unknown setting\\(s\\) depth"):
        tiny_vlm(depth=3)
    with pytest.raises(ValueError, match="unknown arch 'llava'"):
        tiny_vlm(arch="llava")
    with pytest.raises(ValueError, match="is not key=value"):
        parse_tiny_vlm_spec("tiny-vlm:oops")

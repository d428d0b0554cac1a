"""Prompt rendering: templates, system prompts, chat templates, multimodal messages."""

import pytest

from apmpo.data import (
    PromptFormat,
    build_messages,
    render_prompt,
    render_prompts,
    template_fields,
    uses_chat_template,
    validate_template,
)
from apmpo.models import tiny_tokenizer

EXAMPLE = {"prompt": "Solve $\\frac{1}{2} + x = {y}$.", "answer": "1", "schema": "CREATE TABLE t(a);"}


class NoTemplateTokenizer:
    chat_template = None


def test_plain_template_inserts_values_verbatim():
    text = render_prompt(EXAMPLE, None, template="Schema: {schema}\nQ: {prompt}")
    assert text == "Schema: CREATE TABLE t(a);\nQ: Solve $\\frac{1}{2} + x = {y}$."


def test_plain_with_system_prompt_and_literal_braces():
    text = render_prompt(EXAMPLE, NoTemplateTokenizer(), template="{{json}} {answer}", system_prompt="Be brief.")
    assert text == "Be brief.\n\n{json} 1"


def test_chat_template_auto_true_false():
    tokenizer = tiny_tokenizer()
    chat = render_prompt(EXAMPLE, tokenizer, template="{prompt}", system_prompt="S")
    assert chat == "<|system|>S<|end|><|user|>" + EXAMPLE["prompt"] + "<|end|><|assistant|>"
    assert render_prompt(EXAMPLE, tokenizer, use_chat_template=False) == EXAMPLE["prompt"]
    assert render_prompt(EXAMPLE, tokenizer, use_chat_template=True) == chat.replace("<|system|>S<|end|>", "")
    assert uses_chat_template(tokenizer) and not uses_chat_template(tokenizer, False)
    assert not uses_chat_template(NoTemplateTokenizer())


def test_chat_template_required_but_missing():
    with pytest.raises(ValueError, match="the tokenizer has no chat template"):
        render_prompt(EXAMPLE, NoTemplateTokenizer(), use_chat_template=True)
    with pytest.raises(ValueError, match="no tokenizer was given"):
        render_prompt(EXAMPLE, None, use_chat_template=True)
    with pytest.raises(ValueError, match="must be True, False or 'auto'"):
        render_prompt(EXAMPLE, None, use_chat_template="yes")
    with pytest.raises(ValueError, match="must be True, False or 'auto'"):
        render_prompt(EXAMPLE, None, use_chat_template=1)


def test_messages_and_multimodal_parts():
    messages = render_prompt(EXAMPLE, None, system_prompt="S", return_messages=True)
    assert messages == [{"role": "system", "content": "S"}, {"role": "user", "content": EXAMPLE["prompt"]}]
    parts = build_messages(EXAMPLE, template="Look: {prompt}", num_images=2)
    assert parts == [{"role": "user", "content": [
        {"type": "image"}, {"type": "image"}, {"type": "text", "text": "Look: " + EXAMPLE["prompt"]}]}]
    with pytest.raises(ValueError, match="prompt with images needs a chat template"):
        render_prompt(EXAMPLE, None, num_images=1)
    with pytest.raises(ValueError, match="num_images must be a non-negative integer"):
        build_messages(EXAMPLE, num_images=-1)


def test_multimodal_uses_the_processor_chat_template():
    class Processor:
        chat_template = "x"

        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            assert add_generation_prompt and not tokenize
            return repr(messages)

    text = render_prompt(EXAMPLE, Processor(), num_images=1)
    assert "'type': 'image'" in text


def test_template_errors_name_field_and_example():
    expected = r"example 2: template field \{question\} has no value; available columns: prompt, answer"
    with pytest.raises(ValueError, match=expected):
        render_prompts([{"prompt": "a", "answer": "1", "question": "q"}, {"prompt": "b", "answer": "2"}],
                       template="{question}")
    with pytest.raises(ValueError, match="must be a column name"):
        template_fields("{prompt.__class__}")
    with pytest.raises(ValueError, match="must be a column name"):
        template_fields("{}")
    with pytest.raises(ValueError, match="literal braces"):
        template_fields("{prompt")
    expected = r"uses \{db\} but the examples have no such column; available: prompt, answer"
    with pytest.raises(ValueError, match=expected):
        validate_template("{prompt} {db}", ["prompt", "answer"])
    assert template_fields("{a} {b} {a}") == ["a", "b"]


def test_prompt_format_dataclass():
    fmt = PromptFormat(template="Q: {prompt}", system_prompt="S", use_chat_template=False)
    assert render_prompts([EXAMPLE], None, fmt) == ["S\n\nQ: " + EXAMPLE["prompt"]]
    with pytest.raises(ValueError, match="either prompt_format or template"):
        render_prompts([EXAMPLE], None, fmt, template="{prompt}")
    with pytest.raises(ValueError):
        PromptFormat(template="{0}")
    with pytest.raises(ValueError):
        PromptFormat(use_chat_template="sometimes")

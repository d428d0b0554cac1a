"""Render an example into the prompt a model sees.

Two steps, kept separate so a vision-language processor can take the messages:

1. :func:`build_messages`: the user turn is ``template.format(**example)`` (Python
   ``str.format`` fields naming example columns: ``"{prompt}"``, ``"Schema:\\n{schema}\\n
   Question: {prompt}"``), preceded by an optional system turn. With ``num_images > 0``
   the user content becomes a list of parts, ``[{"type": "image"}, ..., {"type":
   "text", "text": ...}]``, the form Qwen2-VL style processors expect.
2. :func:`render_prompt`: ``use_chat_template="auto"`` applies the tokenizer's (or
   processor's) chat template with ``add_generation_prompt=True`` when it has one, and
   otherwise joins system prompt and user text with a blank line; ``True`` insists on
   a chat template, ``False`` always uses the plain text. ``return_messages=True``
   returns the messages instead of a string.

Column values are inserted verbatim (braces inside a LaTeX problem are safe); only the
template's own braces are syntax (write ``{{`` / ``}}`` for literal braces). Template
fields must be plain column names: attribute or index access is refused.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PromptFormat",
    "template_fields",
    "validate_template",
    "format_template",
    "build_messages",
    "render_prompt",
    "render_prompts",
    "uses_chat_template",
]


@dataclass
class PromptFormat:
    """How examples become prompts (the data section of a trainer or eval config)."""

    template: str = "{prompt}"
    """User-turn text; ``{column}`` fields are filled from the example."""
    system_prompt: str | None = None
    """Optional system turn (inserted verbatim, no fields)."""
    use_chat_template: bool | str = "auto"
    """"auto": use the tokenizer's chat template if it has one; True: require it; False: plain text."""

    def __post_init__(self):
        _check_mode(self.use_chat_template)
        template_fields(self.template)


def _check_mode(use_chat_template: Any) -> None:
    if not (use_chat_template is True or use_chat_template is False or use_chat_template == "auto"):
        raise ValueError(f"use_chat_template must be True, False or 'auto', got {use_chat_template!r}")


def template_fields(template: str) -> list[str]:
    """Column names used by ``template``; ValueError for bad syntax or non-name fields."""
    if not isinstance(template, str):
        raise TypeError(f"template must be a string, got {type(template).__name__}")
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"template {template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(
                f"template {template!r}: field {{{name}}} must be a column name "
                "(no positional, attribute or index fields)"
            )
        if name not in names:
            names.append(name)
    return names


def validate_template(template: str, columns: Iterable[str]) -> None:
    """Raise ValueError if ``template`` uses a field that is not among ``columns``."""
    available = list(columns)
    missing = [name for name in template_fields(template) if name not in available]
    if missing:
        raise ValueError(
            f"template {template!r} uses {', '.join('{' + m + '}' for m in missing)} "
            f"but the examples have no such column; available: {', '.join(available)}"
        )


def format_template(template: str, example: Mapping[str, Any], *, where: str = "example") -> str:
    """``template`` with its fields filled from ``example``; errors name ``where`` and the field."""
    names = template_fields(template)
    missing = [name for name in names if name not in example]
    if missing:
        raise ValueError(
            f"{where}: template field {{{missing[0]}}} has no value; available columns: {', '.join(map(str, example))}"
        )
    return template.format_map({name: example[name] for name in names})


def build_messages(
    example: Mapping[str, Any],
    *,
    template: str = "{prompt}",
    system_prompt: str | None = None,
    num_images: int = 0,
    where: str = "example",
) -> list[dict[str, Any]]:
    """Chat messages for ``example``: optional system turn, then the user turn.

    With ``num_images`` > 0 the user content is a list: one ``{"type": "image"}`` part
    per image, then ``{"type": "text", "text": ...}`` (the images themselves are passed
    to the processor separately).
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
        raise ValueError(f"num_images must be a non-negative integer, got {num_images!r}")
    text = format_template(template, example, where=where)
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    if num_images:
        content: Any = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
    else:
        content = text
    messages.append({"role": "user", "content": content})
    return messages


def uses_chat_template(tokenizer: Any, use_chat_template: bool | str = "auto") -> bool:
    """Whether :func:`render_prompt` will apply ``tokenizer``'s chat template."""
    _check_mode(use_chat_template)
    has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is True and not has_template:
        what = "no tokenizer was given" if tokenizer is None else "the tokenizer has no chat template"
        raise ValueError(f"use_chat_template=True but {what}; use 'auto' or False for a plain prompt")
    return has_template and use_chat_template is not False


def _plain_text(messages: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            raise ValueError(
                "a prompt with images needs a chat template (a processor or tokenizer that has one); "
                "set use_chat_template to 'auto' or True with such a processor"
            )
        parts.append(content)
    return "\n\n".join(parts)


def render_prompt(
    example: Mapping[str, Any],
    tokenizer: Any = None,
    *,
    template: str = "{prompt}",
    system_prompt: str | None = None,
    use_chat_template: bool | str = "auto",
    num_images: int = 0,
    return_messages: bool = False,
    where: str = "example",
) -> str | list[dict[str, Any]]:
    """The prompt string for ``example`` (or its messages with ``return_messages=True``).

    ``tokenizer`` may be a tokenizer or a multimodal processor (anything with
    ``chat_template`` and ``apply_chat_template``), or None for plain text.
    """
    _check_mode(use_chat_template)
    messages = build_messages(
        example, template=template, system_prompt=system_prompt, num_images=num_images, where=where
    )
    if return_messages:
        return messages
    if uses_chat_template(tokenizer, use_chat_template):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return _plain_text(messages)


def render_prompts(
    examples: Iterable[Mapping[str, Any]],
    tokenizer: Any = None,
    prompt_format: PromptFormat | None = None,
    **options: Any,
) -> list[str]:
    """:func:`render_prompt` over many examples (errors name the 1-based example index).

    Options are those of :func:`render_prompt`, or a :class:`PromptFormat`.
    """
    if prompt_format is not None:
        if options.keys() & {"template", "system_prompt", "use_chat_template"}:
            raise ValueError("give either prompt_format or template/system_prompt/use_chat_template, not both")
        options = {
            "template": prompt_format.template,
            "system_prompt": prompt_format.system_prompt,
            "use_chat_template": prompt_format.use_chat_template,
            **options,
        }
    return [
        str(render_prompt(example, tokenizer, where=f"example {index}", **options))
        for index, example in enumerate(examples, start=1)
    ]

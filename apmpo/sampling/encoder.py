"""Prompt encoders: the one place where a text-only and a vision-language model differ.

The trainer and ``apmpo eval`` pick an encoder once, from what the model loader returned
(:func:`prompt_encoder_for`: a tokenizer gives a :class:`TextPromptEncoder`, a processor
with an image processor a :class:`VisionPromptEncoder`), and then only call its four
methods:

- ``prepare(examples, ...)``: attach and check the rows' images (vision) or refuse rows
  that carry images (text);
- ``render(example, ...)``: the prompt string (chat template applied);
- ``add_special_tokens(use_chat_template)``: whether tokenization adds BOS & co;
- ``encode(prompts, examples, ...)``: a left-padded :class:`~apmpo.sampling.rollout.PromptBatch`.

A vision prompt is rendered from chat messages whose user turn holds one ``{"type":
"image"}`` part per image: where the text has ``<image>`` markers (the Geometry3K layout
of RL papers: ``"<image>Find x."``) the parts replace them in order, otherwise they all
come before the text. The rendered prompt must hold the processor's image placeholder
(Qwen2-VL: ``<|image_pad|>``) exactly once per image; anything else -- a plain-text
prompt for an image row, a template that drops the image parts, a text that already
holds placeholders -- is an error naming the example. ``encode`` runs the processor
prompt by prompt, so that each prompt's image tensors (``pixel_values``,
``image_grid_thw``) travel with it as ``PromptBatch.extras`` and per-token inputs
(Qwen2-VL's ``mm_token_type_ids``) as ``PromptBatch.token_inputs``; it also asks
generation never to sample the image placeholder tokens (``PromptBatch.suppress_tokens``):
a sampled ``<|image_pad|>`` would not match any image in the log-prob pass.

Departure worth knowing: suppressing the placeholder tokens renormalises the sampling
distribution over the other tokens, while the log-probs of the policy objective are
those of the full distribution. The difference is the probability of the placeholder
tokens in the middle of an answer, which a trained VLM puts at ~0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from apmpo.data.prompts import format_template, render_prompt, uses_chat_template
from apmpo.multimodal.images import (
    IMAGES_KEY,
    ImageError,
    PreparedExamples,
    attach_images,
    find_image_column,
    open_image,
)
from apmpo.multimodal.processor import is_processor

from .rollout import PromptBatch, encode_prompts

__all__ = [
    "IMAGE_MARKER",
    "PromptEncoder",
    "TextPromptEncoder",
    "VisionPromptEncoder",
    "prompt_encoder_for",
]

IMAGE_MARKER = "<image>"
"""Where an image goes in a problem text (Geometry3K as converted for RL: ``"<image>Find x."``)."""


@runtime_checkable
class PromptEncoder(Protocol):
    """What the trainer and the evaluation harness need to turn examples into model inputs."""

    tokenizer: Any
    """The text tokenizer (pad / EOS ids, decoding)."""
    processor: Any
    """What a checkpoint saves beside the weights (the tokenizer, or the multimodal processor)."""

    def prepare(
        self,
        examples: Sequence[Mapping[str, Any]],
        *,
        source: str | os.PathLike | None = None,
        on_bad_row: str = "error",
        where: str = "example",
        **options: Any,
    ) -> PreparedExamples: ...

    def render(
        self,
        example: Mapping[str, Any],
        *,
        template: str = "{prompt}",
        system_prompt: str | None = None,
        use_chat_template: bool | str = "auto",
        where: str = "example",
    ) -> str: ...

    def add_special_tokens(self, use_chat_template: bool | str = "auto") -> bool: ...

    def encode(
        self,
        prompts: Sequence[str],
        examples: Sequence[Mapping[str, Any]],
        *,
        add_special_tokens: bool = False,
        max_prompt_tokens: int | None = None,
        device: torch.device | str = "cpu",
    ) -> Any: ...


class TextPromptEncoder:
    """A text-only causal LM: :func:`apmpo.data.prompts.render_prompt` and :func:`apmpo.sampling.rollout.encode_prompts`."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.processor = tokenizer

    def prepare(self, examples, *, source=None, on_bad_row="error", where="example", **options) -> PreparedExamples:
        """The rows unchanged; rows that carry images are refused (this model cannot see them)."""
        rows = [dict(e) for e in examples]
        column = find_image_column(list(rows[0])) if rows else None
        if column is not None and any(r.get(column) not in (None, [], ()) for r in rows):
            origin = f"{source}: " if source is not None else ""
            raise ImageError(
                f"{origin}the examples have images (column {column!r}) but the model is text-only "
                "(its tokenizer has no image processor); use a vision-language model (a Qwen2-VL / "
                "Qwen2.5-VL directory, or 'tiny-vlm' for tests), or drop the column"
            )
        return PreparedExamples(rows, None)

    def render(
        self, example, *, template="{prompt}", system_prompt=None, use_chat_template="auto", where="example"
    ) -> str:
        return str(
            render_prompt(
                example,
                self.tokenizer,
                template=template,
                system_prompt=system_prompt,
                use_chat_template=use_chat_template,
                where=where,
            )
        )

    def add_special_tokens(self, use_chat_template="auto") -> bool:
        return not uses_chat_template(self.tokenizer, use_chat_template)

    def encode(self, prompts, examples, *, add_special_tokens=False, max_prompt_tokens=None, device="cpu"):
        return encode_prompts(
            self.tokenizer,
            prompts,
            add_special_tokens=add_special_tokens,
            max_prompt_tokens=max_prompt_tokens,
            device=device,
        )


class VisionPromptEncoder:
    """A vision-language model with an ``AutoProcessor`` (Qwen2-VL / Qwen2.5-VL first).

    Args:
        processor: the model's processor (``image_processor``, ``tokenizer``,
            ``image_token``, a chat template rendering image parts).
        image_column: the column holding each row's image(s) (None: detected, see
            :data:`apmpo.multimodal.images.IMAGE_CANDIDATES`).
        image_root: folder relative image paths are resolved against (None: the folder
            of the data file).
    """

    def __init__(self, processor: Any, *, image_column: str | None = None, image_root: str | os.PathLike | None = None):
        if not is_processor(processor):
            raise TypeError(f"{type(processor).__name__} is not a multimodal processor (no image_processor/tokenizer)")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_column = image_column
        self.image_root = image_root
        self.image_token = getattr(processor, "image_token", None)
        if not self.image_token:
            raise TypeError(f"{type(processor).__name__} does not name its image placeholder token (image_token)")
        ids = [self.tokenizer.convert_tokens_to_ids(self.image_token)]
        video = getattr(processor, "video_token", None)
        if video:
            ids.append(self.tokenizer.convert_tokens_to_ids(video))
        unk = self.tokenizer.unk_token_id
        self.placeholder_ids = sorted({i for i in ids if isinstance(i, int) and i != unk})

    def prepare(self, examples, *, source=None, on_bad_row="error", where="example", **options) -> PreparedExamples:
        """Resolve and check every row's images (:func:`apmpo.multimodal.images.attach_images`; ``options``: its
        ``start``, ``skip_hint``, ``check``)."""
        return attach_images(
            examples,
            image_column=self.image_column,
            image_root=self.image_root,
            source=source,
            on_bad_row=on_bad_row,
            where=where,
            **options,
        )

    def messages(
        self,
        example: Mapping[str, Any],
        *,
        template: str = "{prompt}",
        system_prompt: str | None = None,
        where: str = "example",
    ) -> list[dict[str, Any]]:
        """The chat messages of ``example``: image parts at the ``<image>`` markers, else before the text."""
        images = example.get(IMAGES_KEY) or []
        text = format_template(template, example, where=where)
        pieces = text.split(IMAGE_MARKER)
        if len(pieces) > 1 and len(pieces) - 1 != len(images):
            raise ValueError(
                f"{where}: the text has {len(pieces) - 1} {IMAGE_MARKER} markers but the row has "
                f"{len(images)} image(s); give one marker per image, or none (images first)"
            )
        if not images:
            content: Any = text
        elif len(pieces) > 1:
            content = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
            for piece in pieces[1:]:
                content.append({"type": "image"})
                if piece:
                    content.append({"type": "text", "text": piece})
        else:
            content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": content})
        return messages

    def render(
        self, example, *, template="{prompt}", system_prompt=None, use_chat_template="auto", where="example"
    ) -> str:
        """The prompt string; raises ValueError unless it holds one image placeholder per image."""
        images = example.get(IMAGES_KEY) or []
        if uses_chat_template(self.processor, use_chat_template):
            rendered = self.processor.apply_chat_template(
                self.messages(example, template=template, system_prompt=system_prompt, where=where),
                add_generation_prompt=True,
                tokenize=False,
            )
        else:
            text = format_template(template, example, where=where)
            rendered = f"{system_prompt}\n\n{text}" if system_prompt else text
        found = rendered.count(self.image_token)
        if found != len(images):
            how = (
                "the chat template is off (use_chat_template=false): write the placeholder in the template "
                "yourself, or use the processor's chat template"
                if not uses_chat_template(self.processor, use_chat_template)
                else "the chat template must render {'type': 'image'} parts once each, and the text must not hold "
                "placeholders of its own"
            )
            raise ValueError(
                f"{where}: the prompt holds {found} image placeholder(s) {self.image_token!r} for "
                f"{len(images)} image(s); {how}"
            )
        return rendered

    def add_special_tokens(self, use_chat_template="auto") -> bool:
        return not uses_chat_template(self.processor, use_chat_template)

    def encode(self, prompts, examples, *, add_special_tokens=False, max_prompt_tokens=None, device="cpu"):
        """Left-padded prompt tokens, each prompt's image tensors, per-token inputs, the tokens never to sample."""
        if not prompts:
            raise ValueError("encode: no prompts given")
        if len(prompts) != len(examples):
            raise ValueError(f"encode: {len(prompts)} prompts for {len(examples)} examples")
        ids, extras, per_token = [], [], []
        for index, (prompt, example) in enumerate(zip(prompts, examples)):
            label = f"prompt {index}" + (f" (id {example['id']!r})" if "id" in example else "")
            try:
                images = [open_image(ref) for ref in example.get(IMAGES_KEY) or []]
            except ImageError as exc:
                raise ImageError(f"{label}: {exc}") from None
            found = prompt.count(self.image_token)
            if found != len(images):
                raise ValueError(
                    f"{label}: the prompt holds {found} image placeholder(s) {self.image_token!r} "
                    f"for {len(images)} image(s)"
                )
            try:
                enc = self.processor(
                    text=[prompt], images=images or None, return_tensors="pt", add_special_tokens=add_special_tokens
                )
            except (ValueError, TypeError, RuntimeError) as exc:
                raise ValueError(
                    f"{label}: the processor refused the prompt and its {len(images)} image(s): {exc}"
                ) from None
            row_ids = enc["input_ids"][0]  # [P_i]
            if len(row_ids) == 0:
                raise ValueError(f"{label}: empty after tokenization")
            if max_prompt_tokens is not None and len(row_ids) > max_prompt_tokens:
                raise ValueError(
                    f"{label}: {len(row_ids)} tokens (images included), more than "
                    f"rollout.max_prompt_tokens={max_prompt_tokens}"
                )
            shape = enc["input_ids"].shape
            ids.append(row_ids)
            per_token.append(
                {
                    k: v[0]
                    for k, v in enc.items()
                    if k not in ("input_ids", "attention_mask") and torch.is_tensor(v) and v.shape == shape
                }
            )
            extras.append(
                {
                    k: v.to(device)
                    for k, v in enc.items()
                    if k not in ("input_ids", "attention_mask") and torch.is_tensor(v) and k not in per_token[-1]
                }
            )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(r) for r in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)  # [B, P] left-padded
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, r in enumerate(ids):
            input_ids[row, width - len(r) :] = r
            attention_mask[row, width - len(r) :] = 1
        names = sorted({k for t in per_token for k in t})
        token_inputs = {}
        for name in names:
            column = torch.zeros((len(ids), width), dtype=next(t[name] for t in per_token if name in t).dtype)  # [B, P]
            for row, t in enumerate(per_token):
                if name in t:
                    column[row, width - len(t[name]) :] = t[name]
            token_inputs[name] = column.to(device)
        return PromptBatch(
            input_ids.to(device),
            attention_mask.to(device),
            list(prompts),
            extras,
            token_inputs=token_inputs or None,
            suppress_tokens=list(self.placeholder_ids) or None,
        )


def prompt_encoder_for(
    tokenizer_or_processor: Any, *, image_column: str | None = None, image_root: str | os.PathLike | None = None
) -> PromptEncoder:
    """The encoder for what the model loader returned: a processor -> vision, a tokenizer -> text.

    An encoder passes through unchanged. ``image_column`` / ``image_root`` apply to
    vision models; naming an image column for a text-only model is an error.
    """
    if isinstance(tokenizer_or_processor, (TextPromptEncoder, VisionPromptEncoder)):
        return tokenizer_or_processor
    if is_processor(tokenizer_or_processor):
        return VisionPromptEncoder(tokenizer_or_processor, image_column=image_column, image_root=image_root)
    if image_column is not None:
        raise ValueError(f"image_column={image_column!r} given but the model is text-only (it has no image processor)")
    return TextPromptEncoder(tokenizer_or_processor)

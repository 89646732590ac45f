"""Requests for vision-language embedders -> prepared decoder inputs: prompt templates, chat messages with image
parts, tokenization, image preprocessing (the family's, see vlm/families.py) and placeholder expansion.

Every input becomes one prompt. A text goes into the model's `text` template, an image into its `image` template,
an `Interleaved` input (texts and images in one input: Cohere `inputs` content, mixed parts) into the `content`
of the wrapper in order, and chat `messages` through the tokenizer's chat template (image parts written as the
placeholder) followed by the model's `suffix`. Templates are the manifest's (`vlm.templates`), written by the
exporter from the model's reference usage: `{text}` is the text, `{image}` an image's placeholder (in a text
template it stands for the model's smallest image: DSE's rule for text queries), `{content}` the filled template,
`{instruction}` the request's prompt (else the template's default `instruction`; a wrapper without it gets the
prompt before each text instead).
Each image placeholder token is then repeated as many times as the image has feature rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.errors import InputTooLong, InvalidRequest
from trt_embed.runtime.images.sources import ImagePolicy, ImageURL, is_image, load
from trt_embed.runtime.images.two_tower import IMAGE_PARTS, part_item
from trt_embed.runtime.options import RuntimeOptions
from trt_embed.runtime.text.prepare import Preparer
from trt_embed.runtime.text.tokenizer import too_long
from trt_embed.runtime.types import BatchKey, EmbedRequest, Interleaved, Prepared, PreparedInput
from trt_embed.runtime.vlm.families import ImageInput, VisionProcessor, processor_for

_FIELD = re.compile(r"\{(text|image|content|instruction)\}")


def fill(template: str, **values: str) -> str:
    """`template` with its {text}/{image}/{content} fields filled in one pass (braces in the values stay)."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def load_arrays(directory: Path, vlm: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The family's named arrays (`vlm.arrays`: name -> .npy file in the artifact)."""
    return {name: np.load(directory / file) for name, file in (vlm.get("arrays") or {}).items()}


class VlmPreparer:
    """Checks and prepares requests for one vision-language artifact (CPU work, on preparation threads)."""

    def __init__(self, preparer: Preparer, options: RuntimeOptions | None = None) -> None:
        vlm = preparer.manifest.vlm or {}
        options = options or RuntimeOptions()
        self.manifest = preparer.manifest
        self.tokenizer = preparer.tokenizer
        self.render_chat = preparer.render_chat
        self.processor: VisionProcessor = processor_for(vlm, load_arrays(preparer.directory, vlm))
        self.image_token_id = int(vlm["image_token_id"])
        self.placeholder = str(vlm["image_placeholder"])
        self.templates: dict[str, str] = {"text": "{text}", "image": "{image}", "wrapper": "{content}"}
        self.templates.update(vlm.get("templates") or {})
        self.suffix = str(vlm.get("suffix") or "")
        self.max_images = options.max_images
        self.policy = ImagePolicy.from_options(options)

    # -- checks that need no decoding ----------------------------------------------------------------------------

    def items(self, request: EmbedRequest) -> list[Any]:
        """The request's inputs: `images`, `inputs` (texts, images and `Interleaved` mixed), or one conversation."""
        given = [name for name in ("inputs", "images", "messages") if getattr(request, name) is not None]
        if len(given) != 1:
            raise InvalidRequest("give exactly one of `input`, `images` or `messages`", "input")
        if request.messages is not None:
            if isinstance(request.messages, str | bytes) or not isinstance(request.messages, Sequence):
                raise InvalidRequest("messages must be a list of {role, content} objects", "messages")
            return [list(request.messages)]
        value = request.images if request.images is not None else request.inputs
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise InvalidRequest(f"{given[0]} must be a list", given[0])
        return list(value)

    def check(self, request: EmbedRequest, check_texts: Callable[[Any], None]) -> int:
        """Every check before any decoding; returns the number of inputs."""
        if request.task != "embed":
            raise InvalidRequest(
                f"this vision-language model supports the embed task only, not {request.task!r}", "task"
            )
        items = self.items(request)
        if not items:
            raise InvalidRequest("inputs are empty: pass at least one text or image", "input")
        images = 0
        for n, item in enumerate(items):
            if isinstance(item, Interleaved):
                images += sum(1 for part in item.parts if is_image(part))
                check_texts([part for part in item.parts if isinstance(part, str)])
            elif is_image(item):
                images += 1
            elif isinstance(item, str):
                check_texts([item])
            elif request.messages is not None:
                contents = [m.get("content") for m in item if isinstance(m, Mapping)]
                parts = [p for c in contents if isinstance(c, list) for p in c if isinstance(p, Mapping)]
                images += sum(1 for p in parts if p.get("type") in IMAGE_PARTS)
            else:
                raise InvalidRequest(
                    f"input[{n}] is a {type(item).__name__}: a vision-language model takes texts and images "
                    "(token-id lists are not accepted: image placeholders are expanded from text)",
                    "input",
                )
        if self.max_images is not None and images > self.max_images:
            raise InvalidRequest(
                f"{images} images in one request; this server takes at most {self.max_images}", "input"
            )
        return len(items)

    # -- preparation -----------------------------------------------------------------------------------------

    def prepare(self, request: EmbedRequest, variant: str, prompt: str | None = None) -> Prepared:
        """Prompts, images and token ids of every input; `prompt` (an instruction) goes before each text."""
        prompts: list[str] = []
        images: list[list[ImageInput]] = []
        for n, item in enumerate(self.items(request)):
            text, pictures = self._prompt(item, request, f"input[{n}]", prompt or "")
            prompts.append(text)
            images.append(pictures)
        specials = request.add_special_tokens  # as for text models: the server turns it off for chat messages
        tokens = self.tokenizer.encode(prompts, truncate="none", check_length=False, add_special_tokens=specials)
        items = [
            self._expanded(n, ids, pictures) for n, (ids, pictures) in enumerate(zip(tokens.ids, images, strict=True))
        ]
        return Prepared(key=BatchKey(variant=variant, output="sentence_embedding", skip=0, route="vlm"), items=items)

    def _prompt(self, item: Any, request: EmbedRequest, where: str, prompt: str) -> tuple[str, list[ImageInput]]:
        if request.messages is not None:
            return self._conversation(item, request)
        parts = list(item.parts) if isinstance(item, Interleaved) else [item]
        pictures = [self._image(part, where) for part in parts if is_image(part)]
        instruction = prompt or self.templates.get("instruction", "")
        if "{instruction}" in self.templates["wrapper"]:  # the request's prompt is the template's instruction
            prompt = ""
        if isinstance(item, str):
            content = fill(self.templates["text"], text=prompt + item, image=self.placeholder)
            pictures = [self._placeholder() for _ in range(self.templates["text"].count("{image}"))]
        elif len(parts) == 1 and pictures:
            content = fill(self.templates["image"], image=self.placeholder)
        else:
            bad = next((p for p in parts if not is_image(p) and not isinstance(p, str)), None)
            if bad is not None:
                raise InvalidRequest(f"{where} holds a {type(bad).__name__}: not a text or an image", "input")
            content = "".join(self.placeholder if is_image(p) else prompt + p for p in parts)
        return fill(self.templates["wrapper"], content=content, instruction=instruction), pictures

    def _conversation(self, messages: list[Any], request: EmbedRequest) -> tuple[str, list[ImageInput]]:
        """Chat messages with their image parts written as placeholders, through the chat template."""
        pictures: list[ImageInput] = []
        flat: list[dict[str, Any]] = []
        for n, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise InvalidRequest(f"messages[{n}] must be an object with `role` and `content`", "messages")
            content = message.get("content")
            if isinstance(content, list):
                texts = []
                for k, part in enumerate(content):
                    item = part_item(part, f"messages[{n}].content[{k}]")
                    if isinstance(item, ImageURL):
                        pictures.append(self._image(item, f"messages[{n}].content[{k}]"))
                        texts.append(self.placeholder)
                    else:
                        texts.append(item)
                content = "".join(texts)
            flat.append({**message, "content": content})
        if not pictures and "{image}" in self.templates["text"]:  # DSE: a text query carries the smallest image
            user = next((m for m in flat if m.get("role") == "user"), None)
            if user is None:
                raise InvalidRequest("messages need a user message", "messages")
            user["content"] = self.placeholder * self.templates["text"].count("{image}") + str(user["content"] or "")
            pictures = [self._placeholder() for _ in range(self.templates["text"].count("{image}"))]
        text = self.render_chat(flat, request.chat)
        if self.suffix and not text.endswith(self.suffix):
            text += self.suffix
        return text, pictures

    def _image(self, item: Any, where: str) -> ImageInput:
        loaded = load(item, self.policy, where)
        try:
            return self.processor.image(loaded)
        except InvalidRequest:
            raise
        except Exception as exc:  # an image Pillow decoded but the family cannot preprocess is the client's image
            raise InvalidRequest(f"{where} could not be preprocessed ({exc})", "input") from None

    def _placeholder(self) -> ImageInput:
        return self.processor.image(self.processor.placeholder_image())

    def _expanded(self, n: int, ids: list[int], pictures: list[ImageInput]) -> PreparedInput:
        """Each image's placeholder token repeated for its feature rows; positions by the family's scheme."""
        array = np.asarray(ids, dtype=np.int64)
        at = np.flatnonzero(array == self.image_token_id)
        if len(at) != len(pictures):
            raise InvalidRequest(
                f"input[{n}] has {len(at)} image placeholder(s) for {len(pictures)} image(s); a text may not contain "
                "the model's image token, and a chat template must write one placeholder per image part",
                "input",
            )
        repeats = np.ones(len(array), dtype=np.int64)
        repeats[at] = [p.tokens for p in pictures]
        expanded = np.repeat(array, repeats)
        limit = self.manifest.max_seq_length
        if len(expanded) > limit:  # images cannot be cut, and the pooled token is at the end
            raise InputTooLong(too_long(limit, len(expanded)), "input")
        positions = self.processor.positions(expanded, pictures, self.image_token_id)
        features = {"input_ids": expanded.tolist(), "position_ids": positions, "images": tuple(pictures)}
        return PreparedInput(features, cost=len(expanded))

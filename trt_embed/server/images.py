"""Images in the HTTP APIs (CLIP / SigLIP models): Cohere `images` and `inputs` content, vLLM multimodal score
content, OpenAI-style `image_url` parts. Everything a client sends becomes an `ImageURL`, which the runtime holds
to the operator's policy (data: URIs always; files and http(s) only where the operator allows them).

Chat-style `messages` with `image_url` parts need no code here: the runtime reads them (runtime/images/two_tower.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import ImageURL, Interleaved, part_item


class MultiModal(BaseModel):
    """vLLM's multimodal score input: {"content": [{"type": "image_url", "image_url": {"url": ...}}, ...]}."""

    model_config = ConfigDict(extra="ignore")

    content: list[dict[str, Any]]


def single_item(parts: list[Any], where: str) -> str | ImageURL | Interleaved:
    """A multi-part input as one item: a text, an image, or texts and images together (which vision-language
    models embed as one input and two-tower models refuse)."""
    items = [part_item(p, f"{where}.content[{n}]") for n, p in enumerate(parts)]
    images = [i for i in items if isinstance(i, ImageURL)]
    if not images:
        return " ".join(str(i) for i in items)
    return images[0] if len(items) == 1 else Interleaved(tuple(items))


def cohere_items(
    texts: list[str] | None, images: list[str] | None, inputs: list[Any] | None
) -> list[str | ImageURL | Interleaved] | None:
    """Cohere v2 `images` (data URIs) or `inputs` (content lists) as runtime inputs; None when there is no image
    (the text path then handles the request as before)."""
    if sum(v is not None for v in (texts, images, inputs)) > 1:
        raise InvalidRequest("give one of `texts`, `images` or `inputs`", "texts")
    if images is not None:
        if not images:
            raise InvalidRequest("`images` must not be empty", "images")
        return [ImageURL(url) for url in images]
    if inputs is None:
        return None
    items = [single_item(list(i.content), f"inputs[{n}]") for n, i in enumerate(inputs)]
    return items if any(isinstance(i, ImageURL | Interleaved) for i in items) else None


def score_side(value: Any, name: str) -> Any:
    """vLLM score sides: a text, texts, or {"content": [parts]} (one item per part, images included)."""
    if isinstance(value, MultiModal):
        value = value.model_dump()
    if isinstance(value, dict):
        content = value.get("content")
        if not isinstance(content, list) or not content:
            raise InvalidRequest(f'{name} must be a text, a list of texts or {{"content": [parts]}}', name)
        return [part_item(p, f"{name}.content[{n}]") for n, p in enumerate(content)]
    return value


def document_of(item: Any) -> dict[str, Any]:
    """A rerank result's `document`: the text, or the image reference it was sent as."""
    if isinstance(item, ImageURL):
        return {"image_url": {"url": item.url}}
    return {"text": item}


def image_count(items: list[Any]) -> int:
    parts = [p for i in items for p in (i.parts if isinstance(i, Interleaved) else (i,))]
    return sum(1 for p in parts if isinstance(p, ImageURL))

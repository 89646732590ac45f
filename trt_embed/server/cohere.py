"""Cohere v2 `/v2/embed` (texts or inputs, input_type, embedding_types, output_dimension, truncate):
schema <-> `EmbedRequest`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import EmbedRequest as Embed
from trt_embed.server.images import cohere_items, image_count
from trt_embed.server.registry import Context, answered, check_batch_size, check_priority, new_id, timing_headers
from trt_embed.server.responses import JSON, parse
from trt_embed.server.sparse import require_dense

EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]

# Cohere's standard input types -> prompt names models commonly use for them, most specific first.
STANDARD_INPUT_TYPES: dict[str, tuple[str, ...]] = {
    "search_query": ("search_query", "query", "retrieval.query", "Retrieval-query"),
    "search_document": ("search_document", "document", "passage", "corpus", "retrieval.passage", "Retrieval-document"),
    "classification": ("classification", "Classification"),
    "clustering": ("clustering", "Clustering", "separation"),
}


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class EmbedInput(BaseModel):
    content: list[dict[str, Any]]


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    texts: list[str] | None = None
    images: list[str] | None = None
    inputs: list[EmbedInput] | None = None
    input_type: str | None = None
    embedding_types: list[EmbeddingType] = Field(default_factory=lambda: list[EmbeddingType](["float"]))
    output_dimension: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    truncate: Literal["NONE", "START", "END"] = "END"
    priority: StrictInt = 0


def prompt_for(input_type: str | None, prompts: dict[str, str], images: bool = False) -> str | None:
    """The prompt name for a Cohere input type: the model's own key, a standard type mapped onto the model's
    prompts (or no prompt when it has none for it), else an error listing what is valid."""
    if input_type is None:
        return None
    if input_type in prompts:
        return input_type
    if input_type == "image":
        if not images:
            raise InvalidRequest("input_type 'image': this model embeds text only", "input_type")
        return None
    if input_type in STANDARD_INPUT_TYPES:
        return next((name for name in STANDARD_INPUT_TYPES[input_type] if name in prompts), None)
    valid = sorted({*STANDARD_INPUT_TYPES, *prompts})
    raise InvalidRequest(f"unknown input_type {input_type!r}; valid: {', '.join(valid)}", "input_type")


def texts_of(body: EmbedRequest) -> list[str]:
    if body.images:
        raise InvalidRequest("images are not supported: this server embeds text", "images")
    if body.texts is not None and body.inputs is not None:
        raise InvalidRequest("give either `texts` or `inputs`, not both", "texts")
    if body.inputs is not None:
        texts = []
        for n, item in enumerate(body.inputs):
            parts = [TextContent.model_validate(c).text for c in item.content if c.get("type") == "text"]
            if len(parts) != len(item.content) or not parts:
                raise InvalidRequest(f"inputs[{n}] must hold text content only", "inputs")
            texts.append(" ".join(parts))
        return texts
    if not body.texts:
        raise InvalidRequest("`texts` (or `inputs`) is required and must not be empty", "texts")
    return body.texts


async def embed(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, EmbedRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    require_dense(served, "/v2/embed")
    check_priority(ctx, body.priority)
    items = cohere_items(body.texts, body.images, body.inputs)  # None: text only
    texts: list[Any] = texts_of(body) if items is None else items
    check_batch_size(ctx, texts, "texts")
    image_tokens = image_count(texts) * (served.runtime.image_tokens or 0)
    prompt_name = prompt_for(body.input_type, served.runtime.manifest.prompts, served.runtime.image_tokens is not None)
    served = ctx.registry.task_variant(served, prompt_name)
    max_tokens = None if body.max_tokens is None else min(body.max_tokens, served.runtime.max_seq_length)
    result = await answered(
        request,
        served.runtime.arun(
            Embed(
                inputs=texts,
                dimensions=body.output_dimension,
                encodings=tuple(dict.fromkeys(body.embedding_types)),
                prompt_name=prompt_name,
                truncate=body.truncate.lower(),  # type: ignore[arg-type]
                truncate_prompt_tokens=max_tokens,
                priority=body.priority,
                variant=served.variant,
            )
        ),
    )
    content = {
        "id": new_id("embed"),
        "embeddings": result.encoded,
        "texts": [t for t in texts if isinstance(t, str)],
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"input_tokens": result.num_tokens, "image_tokens": image_tokens if items else 0},
        },
        "response_type": "embeddings_by_type",
    }
    return JSON(content, headers=timing_headers(result.timing, request.state.request_id))

"""OpenAI `/v1/embeddings`, with vLLM's extra fields."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import encoding
from trt_embed.server.responses import JSON, parse
from trt_embed.server.service import Context, Served, finish, new_id, run, truncate_side

TokenIds = list[int]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | TokenIds | list[TokenIds] | None = None
    messages: list[dict[str, Any]] | None = None
    model: str | None = None
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    # vLLM extras
    truncate_prompt_tokens: int | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool = True
    embed_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    endianness: Literal["native", "little", "big"] = "little"
    use_activation: bool | None = None
    normalize: bool | None = None
    priority: int = 0
    request_id: str | None = None


def inputs_of(body: EmbeddingRequest, served: Served) -> list[str] | list[list[int]]:
    """OpenAI's input forms as one list: a string, strings, one token list or token lists; or chat messages."""
    if body.messages is not None:
        if body.input is not None:
            raise InvalidRequest("give either `input` or `messages`, not both", "messages")
        return [served.runtime.render_chat(body.messages)]
    value = body.input
    if value is None:
        raise InvalidRequest("`input` is required", "input")
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [[int(v) for v in value]]  # type: ignore[arg-type]
    if not value:
        raise InvalidRequest("`input` is empty: pass at least one text", "input")
    return value  # type: ignore[return-value]


def encoded_rows(vectors: Any, fmt: str, embed_dtype: str, endianness: str) -> list[Any]:
    if fmt == "base64":
        return encoding.to_base64(vectors, embed_dtype, endianness)
    return list(vectors)


async def embeddings(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, EmbeddingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    outcome = await run(
        ctx,
        served,
        inputs_of(body, served),
        truncate=truncate_side(body.truncation_side),
        truncate_prompt_tokens=body.truncate_prompt_tokens,
        add_special_tokens=body.add_special_tokens,
        priority=body.priority,
    )
    normalize = body.use_activation if body.use_activation is not None else body.normalize
    vectors = finish(served, outcome, dimensions=body.dimensions, normalize=normalize)
    request_id = body.request_id or request.state.request_id
    data = [
        {"object": "embedding", "index": i, "embedding": row}
        for i, row in enumerate(encoded_rows(vectors, body.encoding_format, body.embed_dtype, body.endianness))
    ]
    content = {
        "id": new_id("embd") if body.request_id is None else body.request_id,
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": data,
        "usage": {"prompt_tokens": outcome.num_tokens, "total_tokens": outcome.num_tokens},
    }
    return JSON(content, headers=outcome.headers(request_id))

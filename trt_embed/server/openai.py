"""OpenAI `/v1/embeddings`, with vLLM's extra fields: schema <-> `EmbedRequest`."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.runtime import EmbedRequest
from trt_embed.server.ids import safe_request_id
from trt_embed.server.registry import (
    Context,
    StrictInput,
    answered,
    as_inputs,
    check_batch_size,
    check_priority,
    new_id,
    timing_headers,
    truncate_side,
)
from trt_embed.server.responses import JSON, parse


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: StrictInput | None = None
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
    priority: StrictInt = 0
    request_id: str | None = None


async def embeddings(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, EmbeddingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    inputs = None if body.input is None else as_inputs(body.input)
    if inputs is not None:
        check_batch_size(ctx, inputs)
    result = await answered(
        request,
        served.runtime.arun(
            EmbedRequest(
                inputs=inputs,
                messages=body.messages,
                dimensions=body.dimensions,
                normalize=body.use_activation if body.use_activation is not None else body.normalize,
                encodings=(body.encoding_format,),
                embed_dtype=body.embed_dtype,
                endianness=body.endianness,
                truncate=truncate_side(body.truncation_side),  # type: ignore[arg-type]
                truncate_prompt_tokens=body.truncate_prompt_tokens,
                add_special_tokens=body.add_special_tokens,
                priority=body.priority,
                variant=served.variant,
            )
        ),
    )
    rows = result.encoded[body.encoding_format]
    request_id = safe_request_id(body.request_id)  # a header value: printable ASCII, bounded, else a fresh id
    content = {
        "id": new_id("embd") if request_id is None else request_id,
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
    }
    return JSON(content, headers=timing_headers(result.timing, request_id or request.state.request_id))

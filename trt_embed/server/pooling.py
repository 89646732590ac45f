"""vLLM's `/pooling` (embed and token_embed tasks): schema <-> `EmbedRequest`."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.runtime import EmbedRequest
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


class PoolingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: StrictInput
    task: Literal["embed", "token_embed"] = "embed"
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    truncate_prompt_tokens: int | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool = True
    use_activation: bool | None = None
    normalize: bool | None = None
    embed_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    endianness: Literal["native", "little", "big"] = "little"
    priority: StrictInt = 0


async def pooling(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, PoolingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    inputs = as_inputs(body.input)
    check_batch_size(ctx, inputs)
    result = await answered(
        request,
        served.runtime.arun(
            EmbedRequest(
                inputs=inputs,
                task=body.task,
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
    content = {
        "id": new_id("pool"),
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": [{"index": i, "object": "pooling", "data": row} for i, row in enumerate(rows)],
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
    }
    return JSON(content, headers=timing_headers(result.timing, request.state.request_id))

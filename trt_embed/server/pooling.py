"""vLLM's `/pooling` (embed and token_embed tasks): schema <-> `EmbedRequest`."""

from __future__ import annotations

import time
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from trt_embed.server.common import EmbedOptions
from trt_embed.server.registry import (
    Context,
    StrictInput,
    answered,
    as_inputs,
    check_batch_size,
    check_priority,
    new_id,
    timing_headers,
)
from trt_embed.server.responses import JSON, parse


class PoolingRequest(EmbedOptions):
    input: StrictInput
    task: Literal["embed", "token_embed", "sparse", "token_classify"] = "embed"  # the last two: sparse models


async def pooling(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, PoolingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    inputs = as_inputs(body.input)
    check_batch_size(ctx, inputs)
    result = await answered(request, served.runtime.arun(body.embed_request(inputs, served.variant, task=body.task)))
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

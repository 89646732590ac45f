"""OpenAI `/v1/embeddings`, with vLLM's extra fields: schema <-> `EmbedRequest`."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trt_embed.server.common import EmbedOptions
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
)
from trt_embed.server.responses import JSON, parse
from trt_embed.server.sparse import require_dense


class EmbeddingRequest(EmbedOptions):
    input: StrictInput | None = None
    messages: list[dict[str, Any]] | None = None
    user: str | None = None
    request_id: str | None = None


async def embeddings(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, EmbeddingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    require_dense(served, "/v1/embeddings")
    check_priority(ctx, body.priority)
    inputs = None if body.input is None else as_inputs(body.input)
    if inputs is not None:
        check_batch_size(ctx, inputs)
    runtime_request = body.embed_request(inputs, served.variant, messages=body.messages)
    result = await answered(request, served.runtime.arun(runtime_request))
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

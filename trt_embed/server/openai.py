"""OpenAI `/v1/embeddings`, with vLLM's extra fields and its chat form: schema <-> `EmbedRequest`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.server.common import EmbedOptions, ignored_headers
from trt_embed.server.ids import safe_request_id
from trt_embed.server.output import embeddings_response
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
from trt_embed.server.responses import parse
from trt_embed.server.sparse import require_dense


class EmbeddingRequest(EmbedOptions):
    input: StrictInput | None = None
    request_id: str | None = None


async def embeddings(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, EmbeddingRequest, ctx.settings.max_body_bytes)
    if body.input is None and "inputs" in (body.model_extra or {}):  # Hugging Face TEI's field name
        raise InvalidRequest("/v1/embeddings reads `input` (OpenAI's field), not `inputs`: rename it", "input")
    served = ctx.registry.get(body.model)
    require_dense(served, "/v1/embeddings")
    check_priority(ctx, body.priority)
    body.check_template(ctx.settings.trust_request_chat_template)
    inputs = None if body.input is None else as_inputs(body.input)
    if inputs is not None:
        check_batch_size(ctx, inputs)
    runtime_request = body.embed_request(inputs, served.variant, auto_truncate=ctx.settings.auto_truncate)
    result = await answered(request, served.runtime.arun(runtime_request))
    request_id = safe_request_id(body.request_id)  # a header value: printable ASCII, bounded, else a fresh id
    headers = {**timing_headers(result.timing, request_id or request.state.request_id), **ignored_headers(body)}
    response_id = new_id("embd") if request_id is None else request_id
    return embeddings_response(
        result, body, kind="embedding", response_id=response_id, model=served.name, headers=headers
    )

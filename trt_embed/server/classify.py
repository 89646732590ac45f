"""vLLM's `/classify`: a sequence classifier's label and class probabilities per input (`data[].label`, `probs`,
`num_classes`) with usage; a model without the classify task is refused in the runtime's words (400, `task`)."""

from __future__ import annotations

import time

from pydantic import StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import classified, classify_request
from trt_embed.server.common import Body, ignored_headers, usage
from trt_embed.server.registry import Context, answered, check_batch_size, check_priority, new_id, timing_headers
from trt_embed.server.responses import JSON, parse


class ClassifyRequest(Body):
    model: str | None = None
    user: str | None = None
    input: str | list[str]
    priority: StrictInt = 0


async def classify(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, ClassifyRequest, ctx.settings.max_body_bytes)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise InvalidRequest("`input` must not be empty", "input")
    check_batch_size(ctx, texts, "input")
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    run = classify_request(texts, served.variant, body.priority)
    result = await answered(request, served.runtime.arun(run))
    rows = classified(served.runtime.manifest.head_config, result)
    content = {
        "id": new_id("classify"),
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": [
            {"index": i, "label": row.label, "probs": row.probs, "num_classes": row.num_classes}
            for i, row in enumerate(rows)
        ],
        "usage": usage(result.num_tokens),
    }
    headers = {**timing_headers(result.timing, request.state.request_id), **ignored_headers(body)}
    return JSON(content, headers=headers)

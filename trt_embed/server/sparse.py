"""Sparse embeddings in the shape of text-embeddings-inference's `/embed_sparse`, and the refusal of dense-only
routes for models that have no dense output."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.runtime import EmbedRequest, Sparse, Truncate
from trt_embed.server.errors import HTTPError
from trt_embed.server.registry import (
    Context,
    Served,
    StrictInput,
    answered,
    as_inputs,
    check_batch_size,
    check_priority,
    timing_headers,
)
from trt_embed.server.responses import JSON, parse


class EmbedSparseRequest(BaseModel):
    """TEI's fields; `model`, `top_k` and `priority` are ours."""

    model_config = ConfigDict(extra="ignore")

    inputs: StrictInput
    truncate: bool = False
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    prompt_name: str | None = None
    model: str | None = None
    top_k: StrictInt | None = None
    priority: StrictInt = 0


async def embed_sparse(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, EmbedSparseRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    inputs = as_inputs(body.inputs)
    check_batch_size(ctx, inputs, "inputs")
    side: Truncate = "start" if body.truncation_direction.lower() == "left" else "end"
    runtime_request = EmbedRequest(
        inputs=inputs,
        task="sparse",
        truncate=side if body.truncate else "none",
        prompt_name=body.prompt_name,
        top_k=body.top_k,
        priority=body.priority,
        variant=served.variant,
    )
    result = await answered(request, served.runtime.arun(runtime_request))
    output = result.output
    assert isinstance(output, Sparse)
    content = [
        [{"index": int(i), "value": float(v)} for i, v in zip(ids.tolist(), weights.tolist(), strict=True)]
        for ids, weights in zip(output.ids, output.weights, strict=True)
    ]
    return JSON(content, headers=timing_headers(result.timing, request.state.request_id))


def require_dense(served: Served, route: str) -> None:
    """A 400 for a dense-embedding route asked of a model without a dense output (a SPLADE model)."""
    if not served.runtime.has_dense:
        raise HTTPError(
            400,
            f"model {served.name!r} is a {served.runtime.kind} model without dense embeddings, so {route} cannot "
            'serve it; ask POST /embed_sparse, or POST /pooling with task "sparse"',
            "invalid_request_error",
            "model",
        )

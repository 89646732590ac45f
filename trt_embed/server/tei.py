"""text-embeddings-inference's own routes (`POST /embed`, `GET /info`) on the same runtimes, with TEI's bare
JSON answers and its error shape `{"error", "error_type"}` and statuses (413 validation, 422 tokenizer, 424 backend,
429 overloaded, 400 empty)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt
from starlette.requests import Request
from starlette.responses import Response

import trt_embed
from trt_embed.errors import InvalidRequest
from trt_embed.runtime import Dense, EmbedRequest, Truncate
from trt_embed.server.errors import response_for
from trt_embed.server.registry import Context, StrictInput, answered, as_inputs, check_batch_size, timing_headers
from trt_embed.server.responses import JSON, parse
from trt_embed.server.sparse import require_dense

# TEI's ErrorType (router/src/lib.rs) by the status its server maps it to (router/src/http/server.rs).
ERROR_TYPES = {400: "empty", 413: "validation", 422: "tokenizer", 424: "backend", 429: "overloaded", 503: "unhealthy"}


def tei_error(response: Response) -> Response:
    """Our error response re-shaped as TEI's: caller mistakes become 422 `validation` unless they are a size
    limit (413) or an empty input (400); engine failures become 424 `backend`."""
    body = json.loads(bytes(response.body))
    message = body["error"]["message"] if isinstance(body.get("error"), dict) else str(body)
    status = response.status_code
    if status == 503:
        status = 424
    elif status == 400 and "empty" not in message:
        status = 422
    kind = ERROR_TYPES.get(status, "validation")
    if status == 422:
        kind = "validation"
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "x-request-id")}
    return JSON({"error": message, "error_type": kind}, status_code=status, headers=headers)


def tei_route(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Answer `handler`'s errors in TEI's shape."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:  # every error a client can cause is mapped; bugs stay 500s via response_for
            return tei_error(response_for(exc))

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


class TEIEmbedRequest(BaseModel):
    """TEI's `EmbedRequest` (router/src/http/types.rs); `model` is ours. `truncate` left out cuts over-long
    inputs at the model's limit, as TEI does by default since 1.9 (auto-truncate); `false` refuses them."""

    model_config = ConfigDict(extra="forbid")

    inputs: StrictInput
    truncate: StrictBool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    prompt_name: str | None = None
    normalize: StrictBool = True
    dimensions: StrictInt | None = None
    model: str | None = None


async def _embed(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, TEIEmbedRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    require_dense(served, "POST /embed")
    if not body.inputs:
        raise InvalidRequest("`inputs` cannot be empty: pass at least one text", "inputs")
    inputs = as_inputs(body.inputs)
    check_batch_size(ctx, inputs, "inputs")
    cut = body.truncate if body.truncate is not None else True
    side: Truncate = "start" if body.truncation_direction.lower() == "left" else "end"
    runtime_request = EmbedRequest(
        inputs=inputs,
        truncate=side if cut else "none",
        prompt_name=body.prompt_name,
        normalize=body.normalize,
        dimensions=body.dimensions,
        variant=served.variant,
    )
    result = await answered(request, served.runtime.arun(runtime_request))
    output = result.output
    assert isinstance(output, Dense)
    vectors = np.asarray(output.vectors, dtype=np.float32)
    headers = timing_headers(result.timing, request.state.request_id)
    total = result.timing.prepare + result.timing.queue + result.timing.inference
    headers["x-compute-time"] = headers["x-inference-time"]
    headers["x-total-time"] = f"{total * 1000:.3f}"
    headers["x-compute-tokens"] = str(result.num_tokens)
    return JSON(vectors.tolist(), headers=headers)


async def _info(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    served = ctx.registry.get(None)
    runtime = served.runtime
    model_type: dict[str, object] = {"embedding": {"pooling": str(getattr(runtime, "pooling", "mean"))}}
    return JSON(
        {
            "model_id": served.name,
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": model_type,
            "prompts": None,
            "max_concurrent_requests": 512,
            "max_input_length": runtime.max_seq_length,
            "max_batch_tokens": 16384,
            "max_batch_requests": None,
            "max_client_batch_size": ctx.settings.max_client_batch_size,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": trt_embed.__version__,
            "sha": None,
            "docker_label": None,
        }
    )


embed = tei_route(_embed)
info = tei_route(_info)

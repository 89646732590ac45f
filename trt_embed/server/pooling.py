"""vLLM's `/pooling` (embed and token_embed tasks; `input` or chat `messages`): schema <-> `EmbedRequest`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.server.common import EmbedOptions, ignored_headers
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


class PoolingRequest(EmbedOptions):
    input: StrictInput | None = None
    task: str = "embed"  # sparse and token_classify: sparse models (SPLADE, bge-m3)


def check_task(task: str, supported: tuple[str, ...]) -> None:
    """The reference's refusal of a pooling task the served model does not run (its wording, its list)."""
    if task not in supported:
        raise InvalidRequest(f"Unsupported task: {task!r} Supported tasks: {supported}", "task")


async def pooling(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, PoolingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_task(body.task, served.runtime.tasks)
    check_priority(ctx, body.priority)
    body.check_template(ctx.settings.trust_request_chat_template)
    inputs = None if body.input is None else as_inputs(body.input)
    if inputs is not None:
        check_batch_size(ctx, inputs)
    runtime_request = body.embed_request(
        inputs,
        served.variant,
        auto_truncate=ctx.settings.auto_truncate,
        task=body.task,  # type: ignore[arg-type]
    )
    result = await answered(request, served.runtime.arun(runtime_request))
    headers = {**timing_headers(result.timing, request.state.request_id), **ignored_headers(body)}
    return embeddings_response(
        result, body, kind="pooling", response_id=new_id("pool"), model=served.name, headers=headers
    )

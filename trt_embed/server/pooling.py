"""vLLM's `/pooling` (its tasks, several at once; `input` or chat `messages`): schema <-> `EmbedRequest`."""

from __future__ import annotations

import dataclasses

from pydantic import Field, StrictInt
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
    """vLLM's fields; a list of tasks (or `also`) asks for several outputs of one engine call (bge-m3's dense,
    sparse and ColBERT), `prompt_name` for a model's named prompt ("query": the query side of inference-free
    SPLADE and ColBERT models)."""

    input: StrictInput | None = None
    task: str | list[str] = "embed"  # sparse and token_classify: sparse models (SPLADE, bge-m3)
    also: list[str] = Field(default_factory=list)
    prompt_name: str | None = None
    top_k: StrictInt | None = None  # sparse: the k largest weights
    return_tokens: bool = False  # sparse: each kept token id decoded (FlagEmbedding's lexical_weights keys)

    def tasks(self) -> list[str]:
        """The tasks asked for, the one answered in `data` first, without repeats."""
        first = [self.task] if isinstance(self.task, str) else self.task
        return list(dict.fromkeys([*first, *self.also]))


def check_task(task: str, supported: tuple[str, ...]) -> None:
    """The reference's refusal of a pooling task the served model does not run (its wording, its list)."""
    if task not in supported:
        raise InvalidRequest(f"Unsupported task: {task!r} Supported tasks: {supported}", "task")


async def pooling(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, PoolingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    tasks = body.tasks()
    if not tasks:
        raise InvalidRequest("task is an empty list: name at least one pooling task", "task")
    for task in tasks:
        check_task(task, served.runtime.tasks)
    if len(tasks) > 1 and body.encoding_format.startswith("bytes"):
        raise InvalidRequest("several tasks in one request come as JSON: use float or base64", "encoding_format")
    check_priority(ctx, body.priority)
    body.check_template(ctx.settings.trust_request_chat_template)
    inputs = None if body.input is None else as_inputs(body.input)
    if inputs is not None:
        check_batch_size(ctx, inputs)
    runtime_request = dataclasses.replace(
        body.embed_request(inputs, served.variant, auto_truncate=ctx.settings.auto_truncate, task=tasks[0]),  # type: ignore[arg-type]
        also=tuple(tasks[1:]),  # type: ignore[arg-type]
        prompt_name=body.prompt_name,
        top_k=body.top_k,
        return_tokens=body.return_tokens,
    )
    result = await answered(request, served.runtime.arun(runtime_request))
    headers = {**timing_headers(result.timing, request.state.request_id), **ignored_headers(body)}
    return embeddings_response(
        result, body, kind="pooling", response_id=new_id("pool"), model=served.name, headers=headers
    )

"""vLLM's `/pooling` (embed and token_embed tasks), `/tokenize` and `/detokenize`."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.postprocess import l2_normalize
from trt_embed.server.openai import TokenIds, encoded_rows
from trt_embed.server.responses import JSON, parse
from trt_embed.server.service import Context, finish, new_id, run, truncate_side


class PoolingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[str] | TokenIds | list[TokenIds]
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
    priority: int = 0


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value)


async def pooling(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, PoolingRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    outcome = await run(
        ctx,
        served,
        _as_list(body.input),
        task=body.task,
        truncate=truncate_side(body.truncation_side),
        truncate_prompt_tokens=body.truncate_prompt_tokens,
        add_special_tokens=body.add_special_tokens,
        priority=body.priority,
    )
    activation = body.use_activation if body.use_activation is not None else body.normalize
    if body.task == "embed":
        rows: list[Any] = list(finish(served, outcome, dimensions=body.dimensions, normalize=activation))
    else:  # token vectors are returned as computed unless activation (normalization) is asked for
        rows = [l2_normalize(r) if activation else r for r in outcome.rows]
    if body.encoding_format == "base64":
        rows = [encoded_rows(r.reshape(1, -1), "base64", body.embed_dtype, body.endianness)[0] for r in rows]
    content = {
        "id": new_id("pool"),
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": [{"index": i, "object": "pooling", "data": row} for i, row in enumerate(rows)],
        "usage": {"prompt_tokens": outcome.num_tokens, "total_tokens": outcome.num_tokens},
    }
    return JSON(content, headers=outcome.headers(request.state.request_id))


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool = False


async def tokenize(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, TokenizeRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    runtime = served.runtime
    if (body.prompt is None) == (body.messages is None):
        raise InvalidRequest("give exactly one of `prompt` or `messages`", "prompt")
    text = body.prompt if body.prompt is not None else runtime.render_chat(body.messages or [])
    ids = runtime.tokenizer.encode(
        [text], truncate="none", add_special_tokens=body.add_special_tokens, check_length=False
    ).ids[0]
    content: dict[str, Any] = {"count": len(ids), "max_model_len": runtime.max_seq_length, "tokens": ids}
    content["token_strs"] = [runtime.tokenizer.id_to_token(i) for i in ids] if body.return_token_strs else None
    return JSON(content)


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[int]


async def detokenize(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, DetokenizeRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    vocab = served.runtime.tokenizer.vocab_size
    if any(t < 0 or t >= vocab for t in body.tokens):
        raise InvalidRequest(f"tokens must be ids in [0, {vocab})", "tokens")
    return JSON({"prompt": served.runtime.tokenizer.decode(body.tokens, skip_special_tokens=False)})

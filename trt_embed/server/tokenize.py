"""vLLM's `/tokenize` and `/detokenize`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest, TooLarge
from trt_embed.runtime import Runtime
from trt_embed.server.responses import JSON, parse

INLINE_CHARS = 4096  # longer prompts are tokenized off the event loop


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[int]


def _token_ids(runtime: Runtime, body: TokenizeRequest) -> list[int]:
    text = body.prompt if body.prompt is not None else runtime.render_chat(body.messages or [])
    tokens = runtime.tokenizer.encode(
        [text], truncate="none", add_special_tokens=body.add_special_tokens, check_length=False
    )
    return tokens.ids[0]


async def tokenize(request: Request) -> Response:
    body = await parse(request, TokenizeRequest, request.app.state.ctx.settings.max_body_bytes)
    runtime = request.app.state.ctx.registry.get(body.model).runtime
    if (body.prompt is None) == (body.messages is None):
        raise InvalidRequest("give exactly one of `prompt` or `messages`", "prompt")
    if len(body.prompt or "") > runtime.max_input_chars:
        raise TooLarge(
            f"prompt has {len(body.prompt or '')} characters; the limit is {runtime.max_input_chars}", "prompt"
        )
    if len(body.prompt or "") > INLINE_CHARS or body.messages is not None:
        ids = await run_in_threadpool(_token_ids, runtime, body)
    else:
        ids = _token_ids(runtime, body)
    content: dict[str, Any] = {"count": len(ids), "max_model_len": runtime.max_seq_length, "tokens": ids}
    content["token_strs"] = [runtime.tokenizer.id_to_token(i) for i in ids] if body.return_token_strs else None
    return JSON(content)


async def detokenize(request: Request) -> Response:
    body = await parse(request, DetokenizeRequest, request.app.state.ctx.settings.max_body_bytes)
    runtime = request.app.state.ctx.registry.get(body.model).runtime
    vocab = runtime.tokenizer.vocab_size
    if any(t < 0 or t >= vocab for t in body.tokens):
        raise InvalidRequest(f"tokens must be ids in [0, {vocab})", "tokens")
    return JSON({"prompt": runtime.tokenizer.decode(body.tokens, skip_special_tokens=False)})

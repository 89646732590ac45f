"""vLLM's `/tokenize` (a prompt, or chat messages with its chat defaults), `/detokenize` and `/tokenizer_info`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest, TooLarge
from trt_embed.runtime import Runtime
from trt_embed.server.common import ChatFields, ignored_headers
from trt_embed.server.responses import JSON, parse

INLINE_CHARS = 4096  # longer prompts are tokenized off the event loop


class TokenizeRequest(ChatFields):
    model: str | None = None
    prompt: str | None = None
    add_generation_prompt: bool = True  # the reference's default for /tokenize (embedding chat: False)
    add_special_tokens: bool | None = None  # None: True for a prompt, False for messages
    return_token_strs: bool | None = False
    tools: list[dict[str, Any]] | None = None


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[int]


def _token_ids(runtime: Runtime, body: TokenizeRequest) -> list[int]:
    if body.prompt is not None:
        text = body.prompt
    else:
        text = runtime.render_chat(body.messages or [], body.chat_options(body.tools))
    specials = body.add_special_tokens if body.add_special_tokens is not None else body.prompt is not None
    tokens = runtime.tokenizer.encode([text], truncate="none", add_special_tokens=specials, check_length=False)
    return tokens.ids[0]


async def tokenize(request: Request) -> Response:
    body = await parse(request, TokenizeRequest, request.app.state.ctx.settings.max_body_bytes)
    runtime = request.app.state.ctx.registry.get(body.model).runtime
    body.check_template(request.app.state.ctx.settings.trust_request_chat_template)
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
    return JSON(content, headers=ignored_headers(body))


async def detokenize(request: Request) -> Response:
    body = await parse(request, DetokenizeRequest, request.app.state.ctx.settings.max_body_bytes)
    runtime = request.app.state.ctx.registry.get(body.model).runtime
    vocab = runtime.tokenizer.vocab_size
    if any(t < 0 or t >= vocab for t in body.tokens):
        raise InvalidRequest(f"tokens must be ids in [0, {vocab})", "tokens")
    return JSON({"prompt": runtime.tokenizer.decode(body.tokens, skip_special_tokens=False)})


async def tokenizer_info(request: Request) -> Response:
    """The served tokenizer's configuration (tokenizer_config.json with its class and chat template), as the
    reference's `/tokenizer_info` returns it."""
    model = request.query_params.get("model")
    runtime = request.app.state.ctx.registry.get(model).runtime
    config = dict(runtime.tokenizer_config)
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    config.setdefault("model_max_length", runtime.max_seq_length)
    return JSON(config)

"""vLLM's `/score` and `/rerank` for bi-encoders: cosine similarity of the embeddings."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.requests import cosine_pairs, pair_inputs
from trt_embed.server.responses import JSON, parse
from trt_embed.server.service import Context, Outcome, Served, finish, new_id, run


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    text_1: str | list[str] = Field(validation_alias=AliasChoices("text_1", "data_1", "queries"))
    text_2: str | list[str] = Field(validation_alias=AliasChoices("text_2", "data_2", "documents"))
    truncate_prompt_tokens: int | None = None
    priority: int = 0


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True
    truncate_prompt_tokens: int | None = None
    priority: int = 0


async def _similarities(
    ctx: Context, served: Served, left: list[str], right: list[str], **options: Any
) -> tuple[np.ndarray, Outcome]:
    outcome = await run(ctx, served, [*left, *right], **options)
    vectors = finish(served, outcome, dimensions=None, normalize=True)
    return cosine_pairs(vectors[: len(left)], vectors[len(left) :]), outcome


async def score(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, ScoreRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    left, right = pair_inputs(body.text_1, body.text_2)
    scores, outcome = await _similarities(
        ctx, served, left, right, truncate_prompt_tokens=body.truncate_prompt_tokens, priority=body.priority
    )
    content = {
        "id": new_id("score"),
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(scores)],
        "usage": {"prompt_tokens": outcome.num_tokens, "total_tokens": outcome.num_tokens},
    }
    return JSON(content, headers=outcome.headers(request.state.request_id))


async def rerank(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, RerankRequest, ctx.settings.max_body_bytes)
    if not body.documents:
        raise InvalidRequest("`documents` must not be empty", "documents")
    served = ctx.registry.get(body.model)
    scores, outcome = await _similarities(
        ctx,
        served,
        [body.query],
        body.documents,
        truncate_prompt_tokens=body.truncate_prompt_tokens,
        priority=body.priority,
    )
    order = np.argsort(-scores, kind="stable")
    if body.top_n:
        order = order[: body.top_n]
    results = []
    for index in order:
        item: dict[str, Any] = {"index": int(index), "relevance_score": float(scores[index])}
        if body.return_documents:
            item["document"] = {"text": body.documents[index]}
        results.append(item)
    content = {
        "id": new_id("rerank"),
        "model": served.name,
        "usage": {"total_tokens": outcome.num_tokens},
        "results": results,
    }
    return JSON(content, headers=outcome.headers(request.state.request_id))

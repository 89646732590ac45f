"""vLLM's `/score` and `/rerank` for bi-encoders: cosine similarity of the embeddings."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import ScoreRequest as Score
from trt_embed.server.registry import Context, answered, check_batch_size, check_priority, new_id, timing_headers
from trt_embed.server.responses import JSON, parse


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    text_1: str | list[str] = Field(validation_alias=AliasChoices("text_1", "data_1", "queries"))
    text_2: str | list[str] = Field(validation_alias=AliasChoices("text_2", "data_2", "documents"))
    truncate_prompt_tokens: int | None = None
    priority: StrictInt = 0
    weights: tuple[float, float, float] | None = None  # bge-m3: dense, sparse, ColBERT


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True
    truncate_prompt_tokens: int | None = None
    priority: StrictInt = 0
    weights: tuple[float, float, float] | None = None  # bge-m3: dense, sparse, ColBERT


async def score(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, ScoreRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    for side in (body.text_1, body.text_2):
        check_batch_size(ctx, [side] if isinstance(side, str) else side, "text_1")
    result = await answered(
        request,
        served.runtime.arun_score(
            Score(
                first=body.text_1,
                second=body.text_2,
                truncate_prompt_tokens=body.truncate_prompt_tokens,
                priority=body.priority,
                variant=served.variant,
                weights=body.weights,
            )
        ),
    )
    content = {
        "id": new_id("score"),
        "object": "list",
        "created": int(time.time()),
        "model": served.name,
        "data": [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(result.scores)],
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
    }
    return JSON(content, headers=timing_headers(result.timing, request.state.request_id))


async def rerank(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, RerankRequest, ctx.settings.max_body_bytes)
    if not body.documents:
        raise InvalidRequest("`documents` must not be empty", "documents")
    check_batch_size(ctx, body.documents, "documents")
    served = ctx.registry.get(body.model)
    result = await answered(
        request,
        served.runtime.arun_score(
            Score(
                first=body.query,
                second=body.documents,
                truncate_prompt_tokens=body.truncate_prompt_tokens,
                priority=body.priority,
                variant=served.variant,
                weights=body.weights,
            )
        ),
    )
    scores = result.scores
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
        "usage": {"total_tokens": result.num_tokens},
        "results": results,
    }
    return JSON(content, headers=timing_headers(result.timing, request.state.request_id))

"""vLLM's `/score` and `/rerank` (also `/v1/rerank`, `/v2/rerank`) for bi-encoders: cosine similarity of the
embeddings. Cosine does not change with the vectors' scale, so `use_activation` is accepted and changes nothing."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AliasChoices, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import ScoreRequest as Score
from trt_embed.server.common import Body, ignored_headers, truncation, usage
from trt_embed.server.images import MultiModal, document_of, score_side
from trt_embed.server.registry import Context, answered, check_batch_size, check_priority, new_id, timing_headers
from trt_embed.server.responses import JSON, parse

TokenCount = Annotated[int, Field(ge=-1)]


class ScoreRequest(Body):
    model: str | None = None
    user: str | None = None
    # a side may also be vLLM's multimodal {"content": [parts]} (CLIP/SigLIP: images, see server/images.py)
    text_1: str | list[str] | MultiModal = Field(validation_alias=AliasChoices("text_1", "data_1", "queries"))
    text_2: str | list[str] | MultiModal = Field(
        validation_alias=AliasChoices("text_2", "data_2", "documents", "items")
    )
    truncate_prompt_tokens: TokenCount | None = None
    truncation_side: Literal["left", "right"] | None = None
    use_activation: bool | None = None
    priority: StrictInt = 0
    weights: tuple[float, float, float] | None = None  # bge-m3: dense, sparse, ColBERT


class RerankRequest(Body):
    model: str | None = None
    user: str | None = None
    query: str | MultiModal
    documents: str | list[str] | MultiModal
    top_n: int = Field(default=0, ge=0)  # 0: every document
    return_documents: bool = True
    truncate_prompt_tokens: TokenCount | None = None
    truncation_side: Literal["left", "right"] | None = None
    max_tokens_per_query: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    instruction: str | None = None  # put before the query, as an instruction-tuned model expects
    use_activation: bool | None = None
    priority: StrictInt = 0
    weights: tuple[float, float, float] | None = None  # bge-m3: dense, sparse, ColBERT


def side_limit(value: int | None, limit: int, name: str) -> int | None:
    """A per-side token limit: at least 1 (the schema says so), and no more than the model takes."""
    if value is not None and value > limit:
        raise InvalidRequest(f"{name} ({value}) is greater than max_model_len ({limit})", name)
    return value


async def score(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, ScoreRequest, ctx.settings.max_body_bytes)
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    first, second = score_side(body.text_1, "text_1"), score_side(body.text_2, "text_2")
    for side in (first, second):
        check_batch_size(ctx, [side] if isinstance(side, str) else side, "text_1")
    result = await answered(
        request,
        served.runtime.arun_score(
            Score(
                first=first,
                second=second,
                truncate=truncation(body.truncate_prompt_tokens, body.truncation_side, ctx.settings.auto_truncate),  # type: ignore[arg-type]
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
        "usage": usage(result.num_tokens),
    }
    headers = {**timing_headers(result.timing, request.state.request_id), **ignored_headers(body)}
    return JSON(content, headers=headers)


async def rerank(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await parse(request, RerankRequest, ctx.settings.max_body_bytes)
    documents = [body.documents] if isinstance(body.documents, str) else score_side(body.documents, "documents")
    if not documents:
        raise InvalidRequest("`documents` must not be empty", "documents")
    check_batch_size(ctx, documents, "documents")
    served = ctx.registry.get(body.model)
    check_priority(ctx, body.priority)
    limit = served.runtime.max_seq_length
    query = score_side(body.query, "query")
    if body.instruction is not None:
        if not isinstance(query, str):
            raise InvalidRequest("`instruction` applies to a text query only", "instruction")
        query = f"{body.instruction}{query}"
    result = await answered(
        request,
        served.runtime.arun_score(
            Score(
                first=query[0] if isinstance(query, list) and len(query) == 1 else query,
                second=documents,
                truncate=truncation(body.truncate_prompt_tokens, body.truncation_side, ctx.settings.auto_truncate),  # type: ignore[arg-type]
                truncate_prompt_tokens=body.truncate_prompt_tokens,
                priority=body.priority,
                variant=served.variant,
                first_max_tokens=side_limit(body.max_tokens_per_query, limit, "max_tokens_per_query"),
                second_max_tokens=side_limit(body.max_tokens_per_doc, limit, "max_tokens_per_doc"),
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
            item["document"] = document_of(documents[index])
        results.append(item)
    content = {
        "id": new_id("rerank"),
        "model": served.name,
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
        "results": results,
    }
    headers = {**timing_headers(result.timing, request.state.request_id), **ignored_headers(body)}
    return JSON(content, headers=headers)

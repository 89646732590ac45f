"""`/invocations`, SageMaker's single entry point: the body's shape picks the API, as the reference dispatches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from pydantic import RootModel
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.errors import InvalidRequest
from trt_embed.server import cohere, openai, pooling, score
from trt_embed.server.errors import HTTPError

Handler = Callable[[Request], Awaitable[Response]]


class InvocationsRequest(
    RootModel[
        score.RerankRequest
        | score.ScoreRequest
        | pooling.PoolingRequest
        | openai.EmbeddingRequest
        | cohere.EmbedRequest
    ]
):
    """Any body one of the APIs takes (the OpenAPI document's view of /invocations)."""


# (fields that mark the shape, the route that answers it), first match wins.
SHAPES: tuple[tuple[tuple[str, ...], str, Handler], ...] = (
    (("query", "documents"), "/rerank", score.rerank),
    (("text_1", "text_2"), "/score", score.score),
    (("data_1", "data_2"), "/score", score.score),
    (("queries", "items"), "/score", score.score),
    (("queries", "documents"), "/score", score.score),
    (("task",), "/pooling", pooling.pooling),
    (("input",), "/v1/embeddings", openai.embeddings),
    (("messages",), "/v1/embeddings", openai.embeddings),
    (("texts",), "/v2/embed", cohere.embed),
    (("inputs",), "/v2/embed", cohere.embed),
)


async def invocations(request: Request) -> Response:
    """Read the body once (within the size limit), then hand the request to the route its fields name."""
    limit = request.app.state.ctx.settings.max_body_bytes
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise HTTPError(413, f"request body exceeds the limit of {limit} bytes", "RequestTooLarge")
    request._body = bytes(raw)  # the chosen handler reads the same body again
    try:
        data = orjson.loads(request._body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        for fields, _, handler in SHAPES:
            if all(f in data for f in fields):
                return await handler(request)
    shapes = "; ".join(f"{' + '.join(fields)} -> {route}" for fields, route, _ in SHAPES)
    raise InvalidRequest(f"cannot tell which API this body is for; the shapes /invocations takes: {shapes}")

"""The Starlette app: explicit routes, engines created in `lifespan`, one gate for ids, auth and metrics."""

from __future__ import annotations

import contextlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trt_embed.server import cohere, openai, pooling, score, tokenize
from trt_embed.server.errors import HTTPError, error_response, response_for
from trt_embed.server.metrics import Metrics
from trt_embed.server.openapi import Endpoint, openapi_document
from trt_embed.server.registry import Context, Registry, Settings
from trt_embed.server.responses import JSON

OPEN_PATHS = {"/health", "/metrics"}  # probes and scrapers need no API key


async def starlette_error(request: Request, exc: Exception) -> Response:
    """Routing errors (404 unknown path, 405 wrong method) in the same error shape as the rest."""
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "NotFoundError", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind)


async def health(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    if not ctx.registry.healthy():
        raise HTTPError(503, "the inference engine is not healthy", "ServiceUnavailableError")
    return JSON({"status": "ok", "models": list(ctx.registry.models)})


async def models(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    data = [
        {
            "id": name,
            "object": "model",
            "created": served.created,
            "owned_by": "trt-embed",
            "root": str(served.runtime.artifact.directory),
            "parent": None if served.variant == served.runtime.default_variant else served.variant,
            "max_model_len": served.runtime.max_seq_length,
            "embedding_dim": served.runtime.embedding_dim,
            "backend": served.runtime.backend,
        }
        for name, served in ctx.registry.models.items()
    ]
    return JSON({"object": "list", "data": data})


async def metrics(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)


async def openapi(request: Request) -> Response:
    return JSON(openapi_document(ENDPOINTS))


# The one table of routes: Starlette's routes and the OpenAPI document are both made from it.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/v1/embeddings", openai.embeddings, "POST", "OpenAI embeddings", openai.EmbeddingRequest),
    Endpoint("/v2/embed", cohere.embed, "POST", "Cohere v2 embed", cohere.EmbedRequest),
    Endpoint("/pooling", pooling.pooling, "POST", "vLLM pooling (embed, token_embed)", pooling.PoolingRequest),
    Endpoint("/score", score.score, "POST", "Cosine similarity of text pairs", score.ScoreRequest),
    Endpoint("/v1/score", score.score, "POST", "Cosine similarity of text pairs", score.ScoreRequest),
    Endpoint("/rerank", score.rerank, "POST", "Rank documents by cosine similarity to a query", score.RerankRequest),
    Endpoint("/v1/rerank", score.rerank, "POST", "Rank documents by cosine similarity to a query", score.RerankRequest),
    Endpoint("/tokenize", tokenize.tokenize, "POST", "Tokenize a prompt", tokenize.TokenizeRequest),
    Endpoint("/detokenize", tokenize.detokenize, "POST", "Token ids back to text", tokenize.DetokenizeRequest),
    Endpoint("/v1/models", models, "GET", "Served models"),
    Endpoint("/health", health, "GET", "200 when healthy, 503 otherwise"),
    Endpoint("/metrics", metrics, "GET", "Prometheus metrics"),
    Endpoint("/openapi.json", openapi, "GET", "This document"),
)
ROUTES = [Route(e.path, e.handler, methods=[e.method]) for e in ENDPOINTS]
KNOWN_PATHS = {route.path for route in ROUTES}


class Gate:
    """ASGI middleware: request ids, API key, request metrics. Plain ASGI to stay off the hot path's back."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.expected = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        route = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in raw):
                    raw.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            if self.expected is not None and scope["path"] not in OPEN_PATHS:
                given = headers.get(b"authorization", b"")
                if not hmac.compare_digest(given, self.expected):
                    reason = "missing" if not given else "invalid"
                    response = error_response(
                        401, f"{reason} API key: send `Authorization: Bearer <key>`", "AuthenticationError"
                    )
                    await response(scope, receive, send_with_id)
                    return
            await self.app(scope, receive, send_tracked)
        except Exception as exc:  # every error leaves in the same shape, with its status and request id
            if started_response:
                raise
            await response_for(exc)(scope, receive, send_with_id)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


def create_app(load: Callable[[], Registry], settings: Settings | None = None) -> Starlette:
    """The app; `load` builds the registry of served models when the app starts (in `lifespan`)."""
    settings = settings or Settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry = load()
        for runtime in registry.runtimes:
            runtime.add_observer(metrics)
        metrics.watch_queue(lambda: float(sum(r.queue_size for r in registry.runtimes)))
        app.state.ctx = Context(registry=registry, settings=settings, metrics=metrics)
        try:
            yield
        finally:
            registry.close()  # accepted requests were drained by uvicorn; the scheduler finishes its queue

    handlers: dict[Any, Callable[..., Any]] = {StarletteHTTPException: starlette_error}
    app = Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(Gate, settings=settings, metrics=metrics)
    return app

"""The Starlette app: explicit routes, engines created in `lifespan`, one gate for ids, hosts, auth, security
headers and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trt_embed.server import classify, cohere, invocations, openai, pooling, score, sparse, tei, tokenize
from trt_embed.server.errors import HTTPError, error_response, response_for
from trt_embed.server.ids import header_request_id, safe_request_id
from trt_embed.server.metrics import Metrics
from trt_embed.server.openapi import Endpoint, openapi_document
from trt_embed.server.registry import Context, Registry, Settings, new_id
from trt_embed.server.responses import JSON

OPEN_PATHS = {"/health", "/metrics"}  # probes and scrapers need no API key
CLIENT_CLOSED = 499  # the status metrics record for a client that disconnected before its request was read


async def starlette_error(request: Request, exc: Exception) -> Response:
    """Routing errors (404 unknown path, 405 wrong method) in the same error shape as the rest."""
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "NotFoundError", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return error_response(exc.status_code, message, kind, headers=exc.headers)  # 405 keeps its `Allow`


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
            "root": name,
            "parent": None if served.variant == served.runtime.default_variant else served.variant,
            "permission": [permission(served.created)],
            "max_model_len": served.runtime.max_seq_length,
            "embedding_dim": served.runtime.embedding_dim,
            "backend": served.runtime.backend,
        }
        for name, served in ctx.registry.models.items()
    ]
    return JSON({"object": "list", "data": data})


def permission(created: int) -> dict[str, Any]:
    """The reference's (OpenAI's legacy) model permission entry: everything a pooling model does is allowed."""
    return {
        "id": new_id("modelperm"),
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


async def metrics(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)


async def openapi(request: Request) -> Response:
    return JSON(openapi_document(ENDPOINTS))


# The one table of routes: Starlette's routes and the OpenAPI document are both made from it.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/v1/embeddings", openai.embeddings, "POST", "OpenAI embeddings", openai.EmbeddingRequest),
    Endpoint("/v2/embed", cohere.embed, "POST", "Cohere v2 embed", cohere.EmbedRequest),
    Endpoint(
        "/pooling",
        pooling.pooling,
        "POST",
        "vLLM pooling (embed, token_embed, sparse, token_classify)",
        pooling.PoolingRequest,
    ),
    Endpoint("/embed", tei.embed, "POST", "Dense embeddings (TEI)", tei.TEIEmbedRequest, tei_errors=True),
    Endpoint("/", tei.embed, "POST", "TEI's root: /embed for an embedding model", tei.TEIEmbedRequest, tei_errors=True),
    Endpoint("/info", tei.info, "GET", "The served model and limits (TEI)"),
    Endpoint("/embed_sparse", sparse.embed_sparse, "POST", "Sparse embeddings (TEI)", sparse.EmbedSparseRequest),
    Endpoint(
        "/score", score.score, "POST", "Text pair scores (cross-encoder, or cosine similarity)", score.ScoreRequest
    ),
    Endpoint(
        "/v1/score", score.score, "POST", "Text pair scores (cross-encoder, or cosine similarity)", score.ScoreRequest
    ),
    Endpoint(
        "/rerank",
        score.rerank,
        "POST",
        "Rank documents by relevance to a query (cross-encoder or cosine)",
        score.RerankRequest,
    ),
    Endpoint(
        "/v1/rerank",
        score.rerank,
        "POST",
        "Rank documents by relevance to a query (cross-encoder or cosine)",
        score.RerankRequest,
    ),
    Endpoint(
        "/v2/rerank",
        score.rerank,
        "POST",
        "Rank documents by relevance to a query (cross-encoder or cosine)",
        score.RerankRequest,
    ),
    Endpoint(
        "/classify", classify.classify, "POST", "vLLM classify: labels and probabilities", classify.ClassifyRequest
    ),
    Endpoint(
        "/invocations",
        invocations.invocations,
        "POST",
        "SageMaker entry point: dispatch on the body's shape",
        invocations.InvocationsRequest,
    ),
    Endpoint("/tokenize", tokenize.tokenize, "POST", "Tokenize a prompt", tokenize.TokenizeRequest),
    Endpoint("/detokenize", tokenize.detokenize, "POST", "Token ids back to text", tokenize.DetokenizeRequest),
    Endpoint("/tokenizer_info", tokenize.tokenizer_info, "GET", "The tokenizer's configuration"),
    Endpoint("/v1/models", models, "GET", "Served models"),
    Endpoint("/health", health, "GET", "200 when healthy, 503 otherwise"),
    Endpoint("/metrics", metrics, "GET", "Prometheus metrics"),
    Endpoint("/openapi.json", openapi, "GET", "This document"),
)
ROUTES = [Route(e.path, e.handler, methods=[e.method]) for e in ENDPOINTS]
KNOWN_PATHS = {route.path for route in ROUTES}


class Gate:
    """ASGI middleware: request ids, the allowed-hosts check, the API key, security headers and request metrics.
    Plain ASGI to stay off the hot path's back; every response, errors included, leaves through `send_headers`."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.expected = None if settings.api_key is None else f"Bearer {settings.api_key}".encode()
        hosts = settings.allowed_hosts
        self.guarded: ASGIApp = (
            self.authorized if hosts is None else TrustedHostMiddleware(self.authorized, hosts, www_redirect=False)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = header_request_id(dict(scope["headers"]).get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        route = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500
        started = time.perf_counter()
        started_response = False

        async def send_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message["headers"] = secure_headers(message.get("headers", []), request_id, status)
            await send(message)

        try:
            await self.guarded(scope, receive, send_headers)
        except ClientDisconnect:  # the client left mid-body: nobody to answer, and not a server error
            status = CLIENT_CLOSED
        except asyncio.CancelledError:  # the drain deadline passed (uvicorn cancels what is left): retry elsewhere
            if not started_response:
                await drain_deadline_response()(scope, receive, send_headers)
            raise
        except Exception as exc:  # every error leaves in the same shape, with its status and request id
            if started_response:
                raise
            await response_for(exc)(scope, receive, send_headers)
        finally:
            self.metrics.answered(route, status, time.perf_counter() - started)

    async def authorized(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, behind the API key (probes and scrapers on OPEN_PATHS need none)."""
        if self.expected is not None and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                reason = "missing" if not given else "invalid"
                challenge = "Bearer" if not given else 'Bearer error="invalid_token"'
                response = error_response(
                    401,
                    f"{reason} API key: send `Authorization: Bearer <key>`",
                    "AuthenticationError",
                    headers={"WWW-Authenticate": challenge},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def drain_deadline_response() -> Response:
    """A request still running when the drain deadline passed: 503 with Retry-After, so clients and load balancers
    send it to another server, instead of the 500 the HTTP server would send for a cancelled request."""
    return error_response(
        503,
        "the server is shutting down and this request did not finish before its drain deadline; retry it",
        "ServiceUnavailable",
        headers={"Retry-After": "1"},
    )


def secure_headers(raw: Iterable[tuple[bytes, bytes]], request_id: str, status: int = 200) -> list[tuple[bytes, bytes]]:
    """A response's headers with `nosniff` and exactly one header-safe `x-request-id` (a handler's own id is kept
    only if it is safe: it may come from the request body); a 429 or 503 always carries Retry-After."""
    out = []
    own_id = None
    for key, value in raw:
        name = key.lower()
        if name == b"x-request-id":
            own_id = own_id or safe_request_id(value.decode("latin-1"))
        elif name != b"x-content-type-options":
            out.append((key, value))
    if status in (429, 503) and not any(key.lower() == b"retry-after" for key, _ in out):
        out.append((b"retry-after", b"1"))
    out.append((b"x-request-id", (own_id or request_id).encode("latin-1")))
    out.append((b"x-content-type-options", b"nosniff"))
    return out


def check_settings(settings: Settings) -> None:
    """Refuse settings that would quietly weaken the server: an empty API key turns no authentication on."""
    if settings.api_key is not None and not settings.api_key.strip():
        raise ValueError("the API key is empty: give a non-empty key, or None to serve without authentication")
    for pattern in settings.allowed_hosts or ():
        if not pattern or "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and pattern[:2] != "*."):
            raise ValueError(
                f"allowed host {pattern!r} is not valid: give host names, `*.example.com` wildcards, or `*` for any"
            )


def create_app(
    load: Callable[[], Registry], settings: Settings | None = None, metrics: Metrics | None = None
) -> Starlette:
    """The app; `load` builds the registry of served models when the app starts (in `lifespan`)."""
    settings = settings or Settings()
    check_settings(settings)
    metrics = metrics or Metrics()

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

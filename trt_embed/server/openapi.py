"""`/openapi.json`, generated from the request schemas."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import trt_embed
from trt_embed.server.cohere import EmbedRequest
from trt_embed.server.openai import EmbeddingRequest
from trt_embed.server.pooling import DetokenizeRequest, PoolingRequest, TokenizeRequest
from trt_embed.server.score import RerankRequest, ScoreRequest

POST: dict[str, tuple[type[BaseModel], str]] = {
    "/v1/embeddings": (EmbeddingRequest, "OpenAI embeddings"),
    "/v2/embed": (EmbedRequest, "Cohere v2 embed"),
    "/pooling": (PoolingRequest, "vLLM pooling (embed, token_embed)"),
    "/score": (ScoreRequest, "Cosine similarity of text pairs"),
    "/v1/score": (ScoreRequest, "Cosine similarity of text pairs"),
    "/rerank": (RerankRequest, "Rank documents by cosine similarity to a query"),
    "/v1/rerank": (RerankRequest, "Rank documents by cosine similarity to a query"),
    "/tokenize": (TokenizeRequest, "Tokenize a prompt"),
    "/detokenize": (DetokenizeRequest, "Token ids back to text"),
}
GET = {"/v1/models": "Served models", "/health": "200 when healthy, 503 otherwise", "/metrics": "Prometheus metrics"}
ERROR = {"$ref": "#/components/schemas/Error"}


@functools.cache
def openapi_document() -> dict[str, Any]:
    models = {model for model, _ in POST.values()}
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    components = dict(schemas.get("$defs", {}))
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {k: {"type": ["string", "null"]} for k in ("message", "type", "param", "code")},
            }
        },
    }
    errors = {
        str(s): {"description": d, "content": {"application/json": {"schema": ERROR}}}
        for s, d in (
            (400, "invalid request"),
            (401, "bad or missing API key"),
            (404, "unknown model"),
            (413, "too large"),
            (415, "not JSON"),
            (429, "overloaded"),
            (503, "unhealthy"),
        )
    }
    paths: dict[str, Any] = {}
    for path, (model, summary) in POST.items():
        body = {"$ref": f"#/components/schemas/{model.__name__}"}
        paths[path] = {
            "post": {
                "summary": summary,
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": {"description": "OK"}, **errors},
            }
        }
    for path, summary in GET.items():
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "trt-embed", "version": trt_embed.__version__},
        "paths": paths,
        "components": {"schemas": components},
    }

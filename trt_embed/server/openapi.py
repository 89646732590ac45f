"""`/openapi.json`, generated from the route table (`app.ENDPOINTS`) and its request schemas."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import trt_embed

ERROR = {"$ref": "#/components/schemas/Error"}
ERRORS = (
    (400, "invalid request"),
    (401, "bad or missing API key"),
    (404, "unknown model"),
    (413, "too large"),
    (415, "not JSON"),
    (429, "overloaded"),
    (503, "unhealthy"),
)
# text-embeddings-inference's routes answer TEI's error shape and statuses (its router's `ErrorType` mapping)
TEI_ERROR = {"$ref": "#/components/schemas/TEIError"}
TEI_ERRORS = tuple(
    sorted(
        {
            **dict(ERRORS),
            400: "empty input",
            422: "invalid request, or input the tokenizer refuses",
            424: "the backend failed",
        }.items()
    )
)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One route: path, handler, method, a one-line summary and the request body's schema (POST)."""

    path: str
    handler: Callable[..., Any]
    method: str
    summary: str
    schema: type[BaseModel] | None = None
    tei_errors: bool = False  # text-embeddings-inference's error shape and statuses


@functools.cache
def openapi_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    models = {e.schema for e in endpoints if e.schema is not None}
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
    components["TEIError"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
    }
    errors = {
        str(status): {"description": text, "content": {"application/json": {"schema": ERROR}}}
        for status, text in ERRORS
    }
    tei_errors = {
        str(status): {"description": text, "content": {"application/json": {"schema": TEI_ERROR}}}
        for status, text in TEI_ERRORS
    }
    paths: dict[str, Any] = {}
    for e in endpoints:
        operation: dict[str, Any] = {"summary": e.summary, "responses": {"200": {"description": "OK"}}}
        if e.schema is not None:
            body = {"$ref": f"#/components/schemas/{e.schema.__name__}"}
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            operation["responses"].update(tei_errors if e.tei_errors else errors)
        paths[e.path] = {e.method.lower(): operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": "trt-embed", "version": trt_embed.__version__},
        "paths": paths,
        "components": {"schemas": components},
    }

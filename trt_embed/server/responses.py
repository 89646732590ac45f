"""JSON in and out: orjson, NumPy rows serialized natively, bodies parsed by pydantic models."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from trt_embed.server.errors import HTTPError

Model = TypeVar("Model", bound=BaseModel)
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)


async def parse(request: Request, schema: type[Model], max_bytes: int) -> Model:
    """Check content type and size, then validate the body against `schema`."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPError(
            415, f"expected Content-Type: application/json, got {content_type or 'none'}", "UnsupportedMediaType"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPError(413, f"request body of {declared} bytes exceeds the limit of {max_bytes}", "RequestTooLarge")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HTTPError(413, f"request body exceeds the limit of {max_bytes} bytes", "RequestTooLarge")
    return schema.model_validate(orjson.loads(bytes(body)))

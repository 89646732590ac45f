"""The one place where errors become HTTP responses, in OpenAI's error shape."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from trt_embed.errors import (
    ArtifactError,
    BackendUnavailable,
    EngineError,
    InputTooLong,
    InvalidRequest,
    Overloaded,
    TooLarge,
    TrtEmbedError,
    UnknownModel,
)

log = logging.getLogger("trt_embed.server")
TRUNCATION_HINT = (
    'To cut over-long inputs to the limit instead, send "truncate_prompt_tokens": -1 (Cohere\'s /v2/embed: '
    '"truncate": "END"), or start the server with --auto-truncate.'
)


class HTTPError(Exception):
    """An error raised by the server itself (auth, size limits, content type)."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param
        self.code = code


def error_response(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code or str(status)}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """The first problem: our own refusals (raised inside validators) as they are; a rejected value with the
    valid ones; anything else with the field it is about."""
    first = exc.errors()[0]
    error = first.get("ctx", {}).get("error")
    if isinstance(error, InvalidRequest):
        return str(error), error.param
    location = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = first.get("msg", "invalid value")
    if first.get("type") in ("literal_error", "enum"):
        message = f"{first.get('input')!r} is not valid; {message[0].lower()}{message[1:]}"
    return f"{location or 'body'}: {message}", location or None


def response_for(exc: BaseException) -> Response:
    """Map any exception to its status: 4xx for the caller's mistakes, 429/503 for load, 500 for bugs."""
    if isinstance(exc, ClientDisconnect):  # the client left mid-body: nobody to answer, nothing went wrong here
        return error_response(499, "the client disconnected while sending the request", "ClientClosedRequest")
    if isinstance(exc, HTTPError):
        return error_response(exc.status, str(exc), exc.kind, exc.param, exc.code)
    if isinstance(exc, ValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, "BadRequestError", param)
    if isinstance(exc, orjson.JSONDecodeError):
        return error_response(400, f"request body is not valid JSON: {exc}", "BadRequestError")
    if isinstance(exc, TooLarge):
        return error_response(413, str(exc), "RequestTooLargeError", exc.param)
    if isinstance(exc, InputTooLong):  # the reference's words, then our ways around it
        return error_response(400, f"{exc} {TRUNCATION_HINT}", "BadRequestError", exc.param)
    if isinstance(exc, InvalidRequest):
        return error_response(400, str(exc), "BadRequestError", exc.param)
    if isinstance(exc, UnknownModel):
        return error_response(404, str(exc), "NotFoundError", "model", "model_not_found")
    if isinstance(exc, Overloaded):
        response = error_response(429, str(exc), "OverloadedError", None, "overloaded")
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    if isinstance(exc, EngineError | BackendUnavailable | ArtifactError):
        log.error("engine failure: %s", exc)
        return error_response(503, f"the inference engine failed: {exc}", "ServiceUnavailableError")
    if isinstance(exc, TrtEmbedError):
        return error_response(400, str(exc), "BadRequestError")
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal server error; this is a bug, please report it", "InternalServerError")

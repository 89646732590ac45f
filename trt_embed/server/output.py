"""Embedding and pooling responses: JSON lists (float or base64 rows), or the reference's binary `bytes` /
`bytes_only` bodies with their metadata in a header."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from starlette.responses import Response

from trt_embed.runtime import Dense, EmbedResult, binary_body
from trt_embed.server.common import EmbedOptions, usage
from trt_embed.server.responses import JSON


def vector_rows(result: EmbedResult) -> list[Any]:
    """The float output, one array per input (a vector, or a token matrix)."""
    output = result.output
    return list(output.vectors) if isinstance(output, Dense) else list(getattr(output, "vectors", []))


def embeddings_response(
    result: EmbedResult,
    body: EmbedOptions,
    *,
    kind: Literal["embedding", "pooling"],
    response_id: str,
    model: str,
    headers: dict[str, str],
) -> Response:
    """`data` items as OpenAI's embeddings (`embedding`) or vLLM's pooling (`data`) carry them; `bytes` puts the
    raw values in the body and the rest in a `metadata` header, `bytes_only` sends the body alone."""
    created = int(time.time())
    if body.encoding_format in ("bytes", "bytes_only"):
        content, items = binary_body(vector_rows(result), body.embed_dtype, body.endianness)
        if body.encoding_format == "bytes":
            meta = {"id": response_id, "created": created, "model": model, "data": items}
            headers = {**headers, "metadata": json.dumps({**meta, "usage": usage(result.num_tokens)})}  # ASCII
        return Response(content, media_type="application/octet-stream", headers=headers)
    rows = result.encoded[body.encoding_format]  # type: ignore[index]
    field = "embedding" if kind == "embedding" else "data"
    also = {task: encoded[body.encoding_format] for task, encoded in result.also_encoded.items()}  # type: ignore[index]
    content_json = {
        "id": response_id,
        "object": "list",
        "created": created,
        "model": model,
        "data": [
            {"index": i, "object": kind, field: row, **({"also": {t: v[i] for t, v in also.items()}} if also else {})}
            for i, row in enumerate(rows)
        ],
        "usage": usage(result.num_tokens),
    }
    return JSON(content_json, headers=headers)

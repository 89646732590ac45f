"""The facade's keyword options as request objects, and a result's arrays as `embed`/`encode` return them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.types import (
    Dense,
    EmbedRequest,
    EmbedResult,
    Inputs,
    PoolingTask,
    ScoreRequest,
    Sparse,
    Vectors,
)


def embed_request(inputs: Inputs | None, task: PoolingTask, options: dict[str, Any]) -> EmbedRequest:
    """The keyword options of `embed`/`encode` as a request (`model` names the variant); a wrong key is a
    TypeError at once."""
    fields = dict(options)
    if "model" in fields:
        fields["variant"] = fields.pop("model")
    return EmbedRequest(inputs=inputs, task=task, **fields)


def score_request(first: str | Sequence[str], second: str | Sequence[str], options: dict[str, Any]) -> ScoreRequest:
    fields = dict(options)
    if "model" in fields:
        fields["variant"] = fields.pop("model")
    return ScoreRequest(first=first, second=second, **fields)


def dense_of(result: EmbedResult) -> Vectors:
    assert isinstance(result.output, Dense)
    return result.output.vectors


def vectors_of(result: EmbedResult) -> Vectors | list[Vectors]:
    output = result.output
    if isinstance(output, Sparse):
        raise InvalidRequest("encode returns arrays; for sparse output use run(EmbedRequest(task='sparse'))", "task")
    return output.vectors

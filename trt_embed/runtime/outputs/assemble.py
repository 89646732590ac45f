"""The pipeline's last steps: a validated request's `Plan`, the engine rows of a request turned into its result
(each task's output by model kind, then the requested encodings), and the observers' batch callback."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.manifest import Manifest
from trt_embed.runtime.outputs import by_kind as kinds
from trt_embed.runtime.outputs import encoding
from trt_embed.runtime.types import (
    Dense,
    EmbedRequest,
    EmbedResult,
    EncodingName,
    Observer,
    Output,
    Prepared,
    Row,
    Sparse,
    Timing,
    Vectors,
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated request with everything resolved that does not need its inputs tokenized."""

    request: EmbedRequest
    variant: str
    dimensions: int | None  # None: full size
    normalize: bool
    ranges: npt.NDArray[np.float32] | None  # int8/uint8 calibration ranges, when asked for


def input_ids(prepared: Prepared) -> list[Sequence[int]]:
    """Each input's token ids (an input cut into pieces by chunked processing: its pieces' ids, joined)."""
    ids = [item.features.get("input_ids", ()) for item in prepared.items]
    if prepared.counts is None:
        return ids
    joined: list[Sequence[int]] = []
    start = 0
    for count in prepared.counts:
        joined.append([t for piece in ids[start : start + count] for t in piece])
        start += count
    return joined


def embed_result(
    manifest: Manifest,
    decode: Callable[[int], str | None],
    plan: Plan,
    rows: list[Row] | Vectors,
    ids: Sequence[Sequence[int]],
    num_tokens: int,
    timing: Timing,
) -> EmbedResult:
    """Every task's output the request asked for (the model kind decides what each reads), then encodings."""
    request = plan.request
    outputs = {
        task: kinds.build(manifest, request, task, rows, ids, dimensions=plan.dimensions, decode=decode)
        for task in kinds.also_tasks(request)
    }
    output = outputs.pop(request.task)
    also = {task: encoded_output(plan, out) for task, out in outputs.items()}
    return EmbedResult(
        output=output,
        encoded=encoded_output(plan, output),
        num_tokens=num_tokens,
        timing=timing,
        also=outputs,
        also_encoded=also,
    )


def encoded_output(plan: Plan, output: Output) -> dict[EncodingName, list[Any]]:
    """Each requested encoding of one output, an item per input: dense rows as encoded; sparse ones as JSON-ready
    indices and values whatever the encoding; token matrices as floats, or base64 of each row-major matrix."""
    names = dict.fromkeys(plan.request.encodings)
    if isinstance(output, Dense):
        return {e: encode(plan, output.vectors, e) for e in names}
    if isinstance(output, Sparse):
        sparse = kinds.encode_sparse(output)
        return {e: sparse for e in names} if plan.request.also else {"float": sparse}
    return {
        e: list(output.vectors) if e == "float" else [encode(plan, r.reshape(1, -1), e)[0] for r in output.vectors]
        for e in names
    }


def encode(plan: Plan, vectors: Vectors, name: EncodingName) -> list[object]:
    r = plan.request
    return encoding.encode_rows(vectors, name, embed_dtype=r.embed_dtype, endianness=r.endianness, ranges=plan.ranges)


def observe_batches(observers: list[Observer]) -> Callable[[int, int, float], None]:
    """The scheduler's per-batch callback, fanned out to every observer."""

    def on_batch(size: int, tokens: int, seconds: float) -> None:
        for observer in observers:
            observer.batch(size, tokens, seconds)

    return on_batch

"""Prepared inputs -> an engine `Batch` (padded or ragged, as the engine's spec says), and rows back out."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from trt_embed.engines.base import Batch, Layout
from trt_embed.runtime.batching.blocks import TokenBlock, block_of
from trt_embed.runtime.types import BatchKey, PreparedInput, Vectors

IntArray = npt.NDArray[np.int64]
T = TypeVar("T")


def pad(
    ids: Sequence[Sequence[int]],
    type_ids: Sequence[Sequence[int]] | None,
    *,
    pad_id: int,
    side: str = "right",
    length: int | None = None,
) -> dict[str, IntArray]:
    """Pad id lists into `input_ids`, `attention_mask` and `token_type_ids` arrays [B, S]."""
    return pad_block(TokenBlock.from_lists(ids, type_ids), pad_id=pad_id, side=side, length=length)


def pad_block(block: TokenBlock, *, pad_id: int, side: str = "right", length: int | None = None) -> dict[str, IntArray]:
    """A token block padded into `input_ids`, `attention_mask` and `token_type_ids` arrays [B, S]. Vectorized:
    the flat ids are scattered through the mask (row-major order is the concatenation's order for either padding
    side), so a batch of a thousand inputs costs no Python loop per row."""
    lengths = block.lengths
    seq = int(lengths.max(initial=0)) if length is None else length
    columns = np.arange(seq)[None, :]
    mask = columns < lengths[:, None] if side == "right" else columns >= (seq - lengths)[:, None]
    input_ids = np.full((len(lengths), seq), pad_id, dtype=np.int64)
    input_ids[mask] = block.ids
    types = np.zeros((len(lengths), seq), dtype=np.int64)
    if block.type_ids is not None:
        types[mask] = block.type_ids
    return {"input_ids": input_ids, "attention_mask": mask.astype(np.int64), "token_type_ids": types}


def pack_block(block: TokenBlock) -> dict[str, IntArray]:
    """A token block as `input_ids`, `token_type_ids` [T] and `cu_seqlens` [B + 1]."""
    types = np.zeros_like(block.ids) if block.type_ids is None else block.type_ids
    return {"input_ids": np.ascontiguousarray(block.ids), "token_type_ids": types, "cu_seqlens": block.offsets}


def exclude_leading(mask: IntArray, skip: int) -> IntArray:
    """Zero the first `skip` real tokens of each row (after any left padding)."""
    if skip <= 0:
        return mask
    first = mask.argmax(axis=1)
    positions = np.arange(mask.shape[1])[None, :]
    out = mask.copy()
    out[positions < (first + skip)[:, None]] = 0
    return out


def make_batch(
    key: BatchKey,
    items: Sequence[PreparedInput],
    *,
    layout: Layout,
    pad_id: int,
    padding_side: str,
    pooling_mask: bool,
    length: int | None = None,
) -> Batch:
    """The engine batch of `items` (single inputs, or token-block units): padded (with a `pooling_mask` when the
    graph takes one) or ragged."""
    block = block_of(items)
    lengths = block.lengths.tolist()
    if layout == "ragged":
        return Batch("ragged", pack_block(block), lengths)
    arrays = pad_block(block, pad_id=pad_id, side=padding_side, length=length)
    if pooling_mask:
        arrays["pooling_mask"] = exclude_leading(arrays["attention_mask"], key.skip)
    return Batch("padded", arrays, lengths)


def rows_of(batch: Batch, output: str, values: Vectors, padding_side: str) -> list[Vectors]:
    """One array per input from an engine output: pooled rows as they are; token rows cut back to each
    input's real tokens (out of the padding, or out of the packed sequence)."""
    if output == "sentence_embedding":
        return list(values)
    if batch.layout == "ragged":
        bounds = batch.arrays["cu_seqlens"]
        return [values[bounds[n] : bounds[n + 1]] for n in range(batch.size)]
    width = values.shape[1]
    if padding_side == "left":
        return [values[row, width - n :] for row, n in enumerate(batch.lengths)]
    return [values[row, :n] for row, n in enumerate(batch.lengths)]


def longest_first(inputs: Sequence[Sized]) -> list[int]:
    """Positions of a large request's inputs, longest first (characters or token ids: a free proxy for token
    counts). Streamed in this order, each chunk holds inputs of like length, and since the scheduler anchors a
    batch on its first input and adds only inputs no longer than it, every batch fills to its budget."""
    return sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))


def in_request_order(rows: Sequence[T], order: Sequence[int]) -> list[T]:
    """Rows computed in `order` put back in the request's order."""
    out: list[T] = list(rows)
    for row, position in zip(rows, order, strict=True):
        out[position] = row
    return out

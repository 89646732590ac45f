"""Token blocks: many tokenized inputs held as flat arrays, queued and batched as a few units.

A large request costs Python work per input on every step of the per-input path (an id list per input, a queued
item, a row out); with a GPU that embeds 30,000 texts a second that work, under one GIL, was the limit. A
`TokenBlock` keeps a chunk's token ids concatenated with their lengths; it is sorted longest first and cut into
units that each fill the engine's budget (`units`). The scheduler queues and merges units as it does single inputs
(a unit counts its rows, its longest row and its real tokens); the engine pool pads or packs them with array
operations; each unit's rows come back as one array. Dense `embed` requests take this path (`Pipeline.run`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.engines.base import EngineSpec
from trt_embed.runtime.types import BatchKey, PreparedInput

IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class TokenBlock:
    """Inputs' token ids concatenated (`ids` [T]) with each input's length (`lengths` [N]); `type_ids` [T], or
    None where every type id is 0 (single texts through BERT-style templates: no array built or copied)."""

    ids: IntArray
    lengths: IntArray
    type_ids: IntArray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def offsets(self) -> IntArray:
        """Where each input starts in `ids`, and the end: [N + 1]."""
        out = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=out[1:])
        return out

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None = None) -> TokenBlock:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        total = int(lengths.sum())
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        types = None
        if type_ids is not None:
            types = np.fromiter(itertools.chain.from_iterable(type_ids), dtype=np.int64, count=total)
            if not types.any():
                types = None
        return cls(flat, lengths, types)

    @classmethod
    def join(cls, blocks: Sequence[TokenBlock]) -> TokenBlock:
        if len(blocks) == 1:
            return blocks[0]
        types = None
        if any(b.type_ids is not None for b in blocks):
            types = np.concatenate([np.zeros_like(b.ids) if b.type_ids is None else b.type_ids for b in blocks])
        return cls(np.concatenate([b.ids for b in blocks]), np.concatenate([b.lengths for b in blocks]), types)

    def rows(self, start: int, stop: int, offsets: IntArray | None = None) -> TokenBlock:
        """Inputs [start, stop) as views (no copy)."""
        bounds = self.offsets if offsets is None else offsets
        a, b = int(bounds[start]), int(bounds[stop])
        types = None if self.type_ids is None else self.type_ids[a:b]
        return TokenBlock(self.ids[a:b], self.lengths[start:stop], types)

    def take(self, order: IntArray) -> TokenBlock:
        """The inputs in `order` (a permutation or a selection), copied into a new block."""
        lengths = self.lengths[order]
        starts = self.offsets[:-1][order]
        new_starts = np.zeros(len(order), dtype=np.int64)
        np.cumsum(lengths[:-1], out=new_starts[1:])
        index = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - new_starts, lengths)
        types = None if self.type_ids is None else self.type_ids[index]
        return TokenBlock(self.ids[index], lengths, types)

    def lists(self) -> list[list[int]]:
        """Each input's ids as a list (for checks and debugging)."""
        return [part.tolist() for part in np.split(self.ids, self.offsets[1:-1])]


@dataclasses.dataclass(frozen=True)
class BlockPrepared:
    """A chunk of a request as units ready for the scheduler; `order` holds the request positions of the units'
    rows, unit after unit."""

    key: BatchKey
    units: list[PreparedInput]
    order: IntArray
    num_tokens: int


def longest_first(block: TokenBlock) -> IntArray:
    """Row order, longest first (ties in input order)."""
    return np.argsort(-block.lengths, kind="stable")


def split(block: TokenBlock, spec: EngineSpec, budget: int) -> list[tuple[int, int]]:
    """Row ranges [a, b) of a block sorted longest first, each as many rows as fit the budget (padded tokens:
    rows x the first row's length; ragged: real tokens), the spec's batch size and its profiles."""
    lengths = block.lengths
    ends = np.cumsum(lengths)
    bounds: list[tuple[int, int]] = []
    start, count = 0, len(lengths)
    while start < count:
        width = int(lengths[start])
        if spec.layout == "padded":
            stop = start + budget // max(width, 1)
        else:
            before = int(ends[start - 1]) if start else 0
            stop = int(np.searchsorted(ends, before + budget, side="right"))
        stop = min(count, start + spec.max_batch_size, max(stop, start + 1))
        while stop - start > 1 and not spec.fits(stop - start, width):
            stop = start + (stop - start) // 2
        bounds.append((start, stop))
        start = stop
    return bounds


def units(block: TokenBlock, spec: EngineSpec, budget: int) -> list[PreparedInput]:
    """A block sorted longest first as the scheduler's units (`split`), each its rows as views."""
    offsets = block.offsets
    out = []
    for start, stop in split(block, spec, budget):
        part = block.rows(start, stop, offsets)
        out.append(
            PreparedInput({"block": part}, cost=part.num_tokens, rows=stop - start, width=int(block.lengths[start]))
        )
    return out


def unit_budget(spec: EngineSpec, spread_floor: int) -> int:
    """Tokens per unit: the engine's budget (a GPU wants full batches); engines whose work is split over several
    CPU workers get units small enough for the queue to share out evenly (it merges them back into batches)."""
    if spec.device == "cpu" and spec.concurrent_calls > 1:
        return min(spec.max_batch_tokens, max(1, spread_floor // 2))
    return spec.max_batch_tokens


def block_of(items: Sequence[PreparedInput]) -> TokenBlock:
    """One token block of a batch's units: token-block units joined, or single inputs' id lists packed."""
    if "block" in items[0].features:
        return TokenBlock.join([item.features["block"] for item in items])
    ids = [item.features["input_ids"] for item in items]
    return TokenBlock.from_lists(ids, [item.features["token_type_ids"] for item in items])


def unit_rows(items: Sequence[PreparedInput], values: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """A pooled output [rows, D] of a batch of token-block units, cut back into one array per unit."""
    cuts = np.cumsum([item.rows for item in items])[:-1]
    return list(np.split(values, cuts))


def scatter(parts: Sequence[npt.NDArray[Any]], orders: Sequence[IntArray], count: int) -> npt.NDArray[np.float32]:
    """Per-chunk rows (each in its `order` of request positions) as one [count, D] array in request order."""
    width = parts[0].shape[1] if parts else 0
    out = np.empty((count, width), dtype=np.float32)
    for rows, order in zip(parts, orders, strict=True):
        out[order] = rows
    return out

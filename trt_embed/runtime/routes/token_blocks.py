"""Dense `embed` requests through token blocks (`blocks.py`): the route of the common request.

A request is tokenized (or its token ids checked) a chunk at a time into a `TokenBlock`, sorted longest first, cut
into units that fill the engine's budget and queued; a large request streams (the next chunk is tokenized while
the current one runs). Rows come back as one array per unit and land in request order with one scatter: no Python
object per input on the way in or out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.engines.base import Batch
from trt_embed.errors import InvalidRequest
from trt_embed.runtime.batching.blocks import (
    BlockPrepared,
    IntArray,
    longest_first,
    scatter,
    unit_budget,
    unit_rows,
    units,
)
from trt_embed.runtime.batching.queue import SPREAD_FLOOR
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.routes.base import Answer, Job, RouteContext, Staged
from trt_embed.runtime.routes.text import STREAM_CHUNK, TextRoute
from trt_embed.runtime.types import BatchKey, EmbedRequest, PreparedInput, Row, Vectors

MIN_CHUNK_TOKENS = 32768  # tokens per chunk, about, or what the engine calls in flight take if more


class TokenBlockRoute(TextRoute):
    """Dense `embed` of a list of texts or of token-id lists; checks and batches as the text route does."""

    name = "tokens"  # units of many inputs: never batched with single inputs

    @classmethod
    def build(cls, context: RouteContext) -> TokenBlockRoute | None:
        return cls(context) if context.kind.token_blocks else None

    def serves(self, request: EmbedRequest) -> bool:
        """Chunked processing of long inputs, other tasks and chat messages keep the per-input route."""
        inputs = request.inputs
        chunked = self.preparer.chunking.enabled and request.truncate_prompt_tokens is None
        return (
            request.task == "embed"
            and not request.also
            and request.messages is None
            and isinstance(inputs, list | tuple)
            and len(inputs) > 0
            and not chunked
        )

    def start(self, request: EmbedRequest, variant: str) -> Job:
        return BlockJob(self, request, variant)

    def rows(
        self, key: BatchKey, items: Sequence[PreparedInput], batch: Batch, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> list[Row]:
        return list(unit_rows(items, outputs[key.output]))  # one pooled array per unit

    def chunk_bounds(self, sizes: IntArray, texts: bool) -> list[tuple[int, int]]:
        """Chunk bounds over inputs sorted longest first: at most `STREAM_CHUNK` inputs and about what the engine
        calls in flight take at once (estimated tokens: ids, or a text's characters / 4 up to the model's limit), so
        the first chunk, tokenized before the engine has work, stays small even for long inputs."""
        limit = self.manifest.max_seq_length
        estimate = np.minimum(sizes // 4 + 2 if texts else sizes, limit)
        spec = self.context.scheduler.spec
        target = max(MIN_CHUNK_TOKENS, spec.max_batch_tokens * spec.concurrent_calls)
        ends = np.cumsum(estimate)
        bounds = []
        start = 0
        while start < len(sizes):
            before = int(ends[start - 1]) if start else 0
            stop = min(start + STREAM_CHUNK, int(np.searchsorted(ends, before + target, side="right")))
            stop = max(stop, start + 1)
            bounds.append((start, stop))
            start = stop
        return bounds


class BlockJob(Job):
    """A request in chunks of like length (characters or ids: a proxy for tokens), longest first."""

    def __init__(self, route: TokenBlockRoute, request: EmbedRequest, variant: str) -> None:
        self.route, self.request = route, request
        inputs = request.inputs
        assert inputs is not None
        self.inputs = inputs
        self.key = route.preparer.batch_key(request, variant, route.name)
        self.sizes = np.fromiter(map(_size, inputs), dtype=np.int64, count=len(inputs))
        self.order = np.argsort(-self.sizes, kind="stable")
        self.parts: list[Vectors] = []
        self.orders: list[IntArray] = []

    def chunks(self) -> Iterable[IntArray]:
        texts = isinstance(self.inputs[0], str)
        return [self.order[start:stop] for start, stop in self.route.chunk_bounds(self.sizes[self.order], texts)]

    def prepare(self, positions: IntArray) -> Staged:
        """One chunk (the inputs at `positions` of the request) tokenized, sorted and cut into units."""
        chunk = [self.inputs[i] for i in positions.tolist()]
        try:
            block = self.route.preparer.prepare_block(self.request, chunk)
        except InvalidRequest as exc:
            raise exc.renumbered(positions.tolist()) from None
        order = longest_first(block)
        block = block.take(order)
        spec = self.route.context.scheduler.spec
        prepared = BlockPrepared(
            self.key, units(block, spec, unit_budget(spec, SPREAD_FLOOR)), positions[order], block.num_tokens
        )
        return Staged([(self.key, prepared.units)], prepared.num_tokens, prepared)

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        rows = results[0].rows
        self.parts.append(np.concatenate(rows) if len(rows) > 1 else rows[0])  # type: ignore[arg-type]
        self.orders.append(staged.state.order)

    def answer(self) -> Answer:
        return scatter(self.parts, self.orders, len(self.inputs)), ()


def _size(item: object) -> int:
    """An input's characters or ids (0 for what is neither: refused when its chunk is prepared)."""
    return len(item) if isinstance(item, str | list | tuple | np.ndarray) else 0

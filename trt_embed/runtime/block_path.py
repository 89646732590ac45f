"""Dense `embed` requests through token blocks (`blocks.py`): the pipeline's path for the common request.

A request is tokenized (or its token ids checked) a chunk at a time into a `TokenBlock`, sorted longest first, cut
into units that fill the engine's budget and queued; a large synchronous request streams (the next chunk is
tokenized while the current one runs). Rows come back as one array per unit and land in request order with one
scatter: no Python object per input on the way in or out.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import Executor, Future

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.blocks import BLOCK_MODALITY, BlockPrepared, IntArray, longest_first, scatter, unit_budget, units
from trt_embed.runtime.prepare import Preparer
from trt_embed.runtime.queue import SPREAD_FLOOR
from trt_embed.runtime.results import account
from trt_embed.runtime.scheduler import Scheduler
from trt_embed.runtime.types import BatchKey, EmbedRequest, Inputs, Timing, Vectors
from trt_embed.runtime.work import Result

STREAM_CHUNK = 1024  # inputs prepared per step of a large synchronous request, at most
MIN_CHUNK_TOKENS = 32768  # and about this many tokens, or what the engine calls in flight take if more


class BlockPath:
    def __init__(self, manifest: Manifest, preparer: Preparer, scheduler: Scheduler) -> None:
        self.manifest = manifest
        self.preparer = preparer
        self.scheduler = scheduler

    def serves(self, request: EmbedRequest) -> bool:
        """Dense `embed` of a list of texts or of token-id lists (chunked processing of long inputs, other tasks,
        other model kinds and vision-language models keep the per-input path; images never reach here)."""
        inputs = request.inputs
        chunked = self.preparer.chunking.enabled and request.truncate_prompt_tokens is None
        return (
            request.task == "embed"
            and not request.also
            and self.manifest.kind == "dense"
            and self.manifest.vlm is None
            and request.messages is None
            and isinstance(inputs, list | tuple)
            and len(inputs) > 0
            and not chunked
        )

    def prepare(self, request: EmbedRequest, key: BatchKey, inputs: Inputs, positions: IntArray) -> BlockPrepared:
        """One chunk (`inputs`, at `positions` of the request) tokenized, sorted and cut into units."""
        block = self.preparer.prepare_block(request, inputs)
        order = longest_first(block)
        block = block.take(order)
        spec = self.scheduler.spec
        return BlockPrepared(
            key, units(block, spec, unit_budget(spec, SPREAD_FLOOR)), positions[order], block.num_tokens
        )

    def run(self, request: EmbedRequest, variant: str) -> tuple[Vectors, tuple[()], int, Timing]:
        """A request on the caller's thread, in chunks, longest inputs first, at most two chunks queued or running
        while the next is tokenized."""
        started = time.perf_counter()
        inputs = request.inputs
        assert inputs is not None
        key = self.preparer.batch_key(request, variant, BLOCK_MODALITY)
        count = len(inputs)
        sizes = np.fromiter(map(_size, inputs), dtype=np.int64, count=count)
        order = np.argsort(-sizes, kind="stable")  # chunks of like length (characters or ids: a proxy for tokens)
        timing = Timing()
        parts: list[Vectors] = []
        orders: list[IntArray] = []
        tokens = 0
        pending: collections.deque[tuple[BlockPrepared, Future[Result]]] = collections.deque()
        for start, stop in self._chunks(sizes[order], isinstance(inputs[0], str)):
            positions = order[start:stop]
            chunk = [inputs[i] for i in positions.tolist()]
            try:
                prepared = self.prepare(request, key, chunk, positions)
            except InvalidRequest as exc:
                raise exc.renumbered(positions.tolist()) from None
            tokens += prepared.num_tokens
            pending.append((prepared, self.scheduler.submit(key, prepared.units, priority=request.priority)))
            if len(pending) > 1:
                done, future = pending.popleft()
                self._gather(done, future.result(), parts, orders, timing)
        while pending:
            done, future = pending.popleft()
            self._gather(done, future.result(), parts, orders, timing)
        timing.prepare = time.perf_counter() - started - timing.queue - timing.inference
        return scatter(parts, orders, count), (), tokens, timing

    def _chunks(self, sizes: IntArray, texts: bool) -> list[tuple[int, int]]:
        """Chunk bounds over inputs sorted longest first: at most `STREAM_CHUNK` inputs and about what the engine
        calls in flight take at once (estimated tokens: ids, or a text's characters / 4 up to the model's limit), so
        the first chunk, tokenized before the engine has work, stays small even for long inputs."""
        limit = self.manifest.max_seq_length
        estimate = np.minimum(sizes // 4 + 2 if texts else sizes, limit)
        spec = self.scheduler.spec
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

    async def arun(
        self, request: EmbedRequest, variant: str, pool: Executor, *, inline: bool
    ) -> tuple[Vectors, tuple[()], int, Timing]:
        """A request from the event loop: tokenized on it when `inline` (small), else in `pool`; then awaited."""
        started = time.perf_counter()
        inputs = request.inputs
        assert inputs is not None
        key = self.preparer.batch_key(request, variant, BLOCK_MODALITY)
        positions = np.arange(len(inputs), dtype=np.int64)
        if inline:
            prepared = self.prepare(request, key, inputs, positions)
        else:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(pool, self.prepare, request, key, inputs, positions)
        timing = Timing(prepare=time.perf_counter() - started)
        future = self.scheduler.submit(key, prepared.units, priority=request.priority)
        result = await asyncio.wrap_future(future)
        parts: list[Vectors] = []
        orders: list[IntArray] = []
        self._gather(prepared, result, parts, orders, timing)
        return scatter(parts, orders, len(inputs)), (), prepared.num_tokens, timing

    @staticmethod
    def _gather(
        prepared: BlockPrepared, result: Result, parts: list[Vectors], orders: list[IntArray], timing: Timing
    ) -> None:
        rows = account(result, timing)
        parts.append(np.concatenate(rows) if len(rows) > 1 else rows[0])  # type: ignore[arg-type]
        orders.append(prepared.order)


def _size(item: object) -> int:
    """An input's characters or ids (0 for what is neither: refused when its chunk is prepared)."""
    return len(item) if isinstance(item, str | list | tuple | np.ndarray) else 0

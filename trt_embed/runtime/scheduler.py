"""The batching scheduler: a bounded priority queue of prepared inputs, packed into engine batches.

Callers prepare (tokenize) in their own threads (the event loop hands that to an executor), so preparation of
the next request overlaps inference of the current batch. Worker threads form batches by the engine's budget
(padded or real tokens, batch size, shape profiles), run the engine and complete futures. Every accepted
request gets exactly one result or one error; a request whose caller gave up is dropped from the queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError

from trt_embed.engines.base import EngineSpec
from trt_embed.errors import EngineError, Overloaded, TrtEmbedError
from trt_embed.runtime.types import BatchKey, PreparedInput, Vectors

RunBatch = Callable[[BatchKey, list[PreparedInput]], list[Vectors]]
OnBatch = Callable[[int, int, float], None]  # (batch size, engine tokens, seconds)


@dataclasses.dataclass
class Result:
    """Per-input outputs of one request, in input order, with where its time went."""

    rows: list[Vectors]
    queue_seconds: float
    inference_seconds: float
    batches: int


@dataclasses.dataclass(eq=False)
class _Request:
    key: BatchKey
    items: Sequence[PreparedInput]
    future: Future[Result]
    enqueued: float
    rows: list[Vectors | None]
    remaining: int
    first_started: float | None = None
    inference_seconds: float = 0.0  # this request's share of the time of the batches it ran in
    batches: int = 0
    done: bool = False


@dataclasses.dataclass(order=True)
class _Item:
    priority: int
    seq: int
    request: _Request = dataclasses.field(compare=False)
    index: int = dataclasses.field(compare=False)
    batch_size: int = dataclasses.field(default=1, compare=False)

    @property
    def length(self) -> int:
        return self.request.items[self.index].length

    @property
    def abandoned(self) -> bool:
        """The request already has its answer (an error) or its caller gave up on it."""
        return self.request.done or self.request.future.cancelled()


@dataclasses.dataclass
class SchedulerStats:
    batches: int = 0
    inputs: int = 0
    batch_tokens: int = 0
    failed_batches: int = 0
    alone_batches: int = 0  # batches run by `run_alone` (nothing else queued or running)


class Scheduler:
    """Packs queued inputs into batches within the engine's spec: at most `max_batch_size` inputs and
    `max_batch_tokens` tokens (padded or real, by the spec's layout), in shapes its profiles take.
    Lower priority values run first; FIFO within a priority."""

    def __init__(
        self,
        run_batch: RunBatch,
        spec: EngineSpec,
        *,
        max_queue: int | None = None,
        on_batch: OnBatch | None = None,
        workers: int = 1,
        run_alone: RunBatch | None = None,
    ) -> None:
        self._run_batch = run_batch
        # For a batch that is the only work queued or running: on CPU, one call over all cores (latency)
        # instead of one single-threaded call per worker (throughput).
        self._run_alone = run_alone
        self._busy = 0  # workers running a batch
        self.spec = spec
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._book = threading.Lock()  # request completion and stats, shared by the workers
        self._closing = False
        self.stats = SchedulerStats()
        # Several workers run batches concurrently (on CPU: one single-threaded engine call per core beats one
        # call spread over all cores for small encoders); each takes its batch from the queue under the lock.
        self._threads = [
            threading.Thread(target=self._work, name=f"trt-embed-scheduler-{n}", daemon=True) for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_size(self) -> int:
        return len(self._heap)

    def submit(self, key: BatchKey, items: Sequence[PreparedInput], *, priority: int = 0) -> Future[Result]:
        """Queue one request's prepared inputs; raises `Overloaded` at once if the queue is full."""
        future: Future[Result] = Future()
        request = _Request(
            key=key,
            items=items,
            future=future,
            enqueued=time.perf_counter(),
            rows=[None] * len(items),
            remaining=len(items),
        )
        if not items:
            future.set_result(Result([], 0.0, 0.0, 0))
            return future
        # Longest first inside a request: consecutive items then pad little when batched together.
        order = sorted(range(len(items)), key=lambda i: items[i].length, reverse=True)
        with self._cond:
            if self._closing:
                raise Overloaded("the runtime is shutting down and accepts no new work")
            if self.max_queue is not None and len(self._heap) + len(items) > self.max_queue:
                raise Overloaded(
                    f"the queue is full ({len(self._heap)} of {self.max_queue} inputs waiting); retry later"
                )
            for index in order:
                heapq.heappush(self._heap, _Item(priority, next(self._seq), request, index))
            self._cond.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting work, finish what is queued, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # -- worker ---------------------------------------------------------------------------------------

    def _take_batch(self) -> list[_Item]:
        """Pop the next batch. The first item in queue order (priority, then age) anchors it and sets its
        width; it is filled with queued items of the same key and priority that are no longer than the anchor,
        longest first, so padding stays small even when concurrent requests have mixed lengths."""
        first = heapq.heappop(self._heap)
        width = first.length
        candidates = sorted(
            (
                item
                for item in self._heap
                if item.priority == first.priority and item.request.key == first.request.key and item.length <= width
            ),
            key=lambda item: (-item.length, item.seq),
        )
        batch = [first]
        lengths = [width]
        spec = self.spec
        for item in candidates:
            size = len(batch) + 1
            if size > spec.max_batch_size or spec.cost([*lengths, item.length]) > spec.max_batch_tokens:
                break
            if not spec.fits(size, width):
                break
            batch.append(item)
            lengths.append(item.length)
        if len(batch) > 1:
            taken = {id(item) for item in batch}
            self._heap = [item for item in self._heap if id(item) not in taken]
            heapq.heapify(self._heap)
        return batch

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closing:
                    self._cond.wait()
                if not self._heap:
                    return
                batch = self._take_batch()
                alone = self._run_alone is not None and not self._heap and self._busy == 0
                live = [item for item in batch if not item.abandoned]
                started = time.perf_counter()
                for item in live:
                    item.batch_size = len(live)
                    if item.request.first_started is None:
                        item.request.first_started = started
                for request in {id(i.request): i.request for i in live}.values():
                    request.batches += 1
                self._busy += 1
            if live:
                self._run(live, started, alone)
            else:
                self._idle()

    def _idle(self) -> None:
        """This worker's engine call is over (counted before results are handed out, so a caller that submits
        again at once finds the scheduler idle and gets the latency path)."""
        with self._cond:
            self._busy -= 1

    def _run(self, live: list[_Item], started: float, alone: bool) -> None:
        """Run one batch outside the queue lock; record its results under the bookkeeping lock."""
        key = live[0].request.key
        run = self._run_alone if alone and self._run_alone is not None else self._run_batch
        rows: list[Vectors] = []
        error: TrtEmbedError | None = None
        try:
            rows = run(key, [i.request.items[i.index] for i in live])
        except Exception as exc:  # one failing batch fails only its own requests
            error = exc if isinstance(exc, TrtEmbedError) else EngineError(f"inference failed: {exc}")
        finally:
            self._idle()
        if error is not None:
            with self._book:
                self.stats.failed_batches += 1
                for item in live:
                    self._fail(item.request, error)
            return
        elapsed = time.perf_counter() - started
        tokens = self.spec.cost([i.length for i in live])
        with self._book:
            self.stats.batches += 1
            self.stats.alone_batches += alone
            self.stats.inputs += len(live)
            self.stats.batch_tokens += tokens
            for item, row in zip(live, rows, strict=True):
                self._complete(item, row, elapsed)
        if self._on_batch is not None:
            self._on_batch(len(live), tokens, elapsed)

    @staticmethod
    def _fail(request: _Request, error: BaseException) -> None:
        if not request.done:
            request.done = True
            with contextlib.suppress(InvalidStateError):  # the caller gave up (cancelled) meanwhile
                request.future.set_exception(error)

    @staticmethod
    def _complete(item: _Item, row: Vectors, elapsed: float) -> None:
        """Store one input's row; the request's share of batch time is proportional to its inputs."""
        request = item.request
        if request.done:
            return
        request.rows[item.index] = row
        request.remaining -= 1
        request.inference_seconds += elapsed / item.batch_size
        if request.remaining == 0:
            request.done = True
            started = request.first_started or request.enqueued
            result = Result(
                rows=[r for r in request.rows if r is not None],
                queue_seconds=started - request.enqueued,
                inference_seconds=request.inference_seconds,
                batches=request.batches,
            )
            with contextlib.suppress(InvalidStateError):  # the caller gave up (cancelled) meanwhile
                request.future.set_result(result)

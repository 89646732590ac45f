"""The batching scheduler: a bounded priority queue of prepared inputs, packed into engine batches.

Callers prepare (tokenize) in their own threads (the event loop hands that to an executor), so preparation of
the next request overlaps inference of the current batch. Worker threads form batches by the engine's budget
(padded or real tokens, batch size, shape profiles), run the engine and complete futures. Every accepted
request gets exactly one result or one error; a request whose caller gave up is dropped from the queue.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError

from trt_embed.engines.base import EngineSpec
from trt_embed.errors import EngineError, Overloaded, TooLarge, TrtEmbedError
from trt_embed.runtime.batching.queue import BatchQueue
from trt_embed.runtime.batching.work import EngineRows, Item, Pending, SchedulerStats
from trt_embed.runtime.types import BatchKey, PreparedInput, Row

RunBatch = Callable[[BatchKey, list[PreparedInput]], list[Row]]
OnBatch = Callable[[int, int, float], None]  # (batch size, engine tokens, seconds)


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
        engine_timeout: float | None = None,
        spread: bool = False,
    ) -> None:
        self._run_batch = run_batch
        # For a batch that is the only work queued or running: on CPU, one call over all cores (latency)
        # instead of one single-threaded call per worker (throughput).
        self._run_alone = run_alone
        self._busy = 0  # workers running a batch
        self.spec = spec
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue = BatchQueue()
        # CPU engines run batches at a flat cost per token, so a queue too short to give every worker a full
        # budget is split evenly over the workers instead of leaving some idle (GPUs want full batches).
        self._spread = spread and workers > 1
        self._workers = workers
        self._cond = threading.Condition()
        self._book = threading.Lock()  # request completion and stats, shared by the workers
        self._closing = False
        self.stats = SchedulerStats()
        # Engine calls in flight (id -> start, items): the watchdog fails those running past `engine_timeout`
        # and `healthy()` reports them, so a hung engine is noticed and its callers get an answer.
        self.engine_timeout = engine_timeout
        self._running: dict[int, tuple[float, list[Item]]] = {}
        # Several workers run batches concurrently (on CPU: one single-threaded engine call per core beats one
        # call spread over all cores for small encoders); each takes its batch from the queue under the lock.
        self._threads = [
            threading.Thread(target=self._work, name=f"trt-embed-scheduler-{n}", daemon=True) for n in range(workers)
        ]
        self._stopped = threading.Event()  # set once the workers are done: ends the watchdog at once
        self._watchdog: threading.Thread | None = None
        if engine_timeout is not None:
            self._watchdog = threading.Thread(target=self._watch, name="trt-embed-watchdog", daemon=True)
        for thread in [*self._threads, *([self._watchdog] if self._watchdog else [])]:
            thread.start()

    @property
    def queue_size(self) -> int:
        return self._queue.count

    def admit(self, count: int) -> None:
        """Refuse early, before any preparation: `TooLarge` for a request that can never fit the queue,
        `Overloaded` (retry later) for one that does not fit now."""
        if self.max_queue is not None and count > self.max_queue:
            raise TooLarge(
                f"{count} inputs in one request can never fit this server's queue of {self.max_queue}; "
                "split the request",
                "input",
            )
        if self._closing:
            raise Overloaded("the runtime is shutting down and accepts no new work")
        if self.max_queue is not None and self._queue.count + count > self.max_queue:
            raise Overloaded(f"the queue is full ({self._queue.count} of {self.max_queue} inputs waiting); retry later")

    def healthy(self) -> bool:
        """Every worker alive and no engine call running past the timeout."""
        watchdog_dead = self._watchdog is not None and not self._watchdog.is_alive()
        if (watchdog_dead or not all(t.is_alive() for t in self._threads)) and not self._closing:
            return False
        if self.engine_timeout is None:
            return True
        now = time.perf_counter()
        with self._cond:
            return all(now - started <= self.engine_timeout for started, _ in self._running.values())

    def submit(self, key: BatchKey, items: Sequence[PreparedInput], *, priority: int = 0) -> Future[EngineRows]:
        """Queue one request's prepared inputs; raises `Overloaded` at once if the queue is full."""
        future: Future[EngineRows] = Future()
        request = Pending(
            key=key,
            items=items,
            future=future,
            enqueued=time.perf_counter(),
            rows=[None] * len(items),
            remaining=len(items),
        )
        if not items:
            future.set_result(EngineRows([], 0.0, 0.0, 0))
            return future
        with self._cond:
            self.admit(sum(item.rows for item in items))
            self._queue.push(request, priority)
            self._cond.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting work, finish what is queued, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._stopped.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout)

    # -- worker ---------------------------------------------------------------------------------------

    def _take_batch(self) -> list[Item]:
        """Pop the next batch (see `BatchQueue.take`); CPU engines split a short queue over their workers."""
        budget = self._queue.fair_share(self.spec, self._workers) if self._spread else self.spec.max_batch_tokens
        return self._queue.take(self.spec, budget)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue.count and not self._closing:
                    self._cond.wait()
                if not self._queue.count:
                    return
                batch = self._take_batch()
                if self._queue.count:  # more work queued: wake another worker (one submit of many inputs notifies one)
                    self._cond.notify()
                alone = self._run_alone is not None and not self._queue.count and self._busy == 0
                live = [item for item in batch if not item.abandoned]
                started = time.perf_counter()
                rows = sum(item.rows for item in live)
                for item in live:
                    item.batch_rows = rows
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

    def _run(self, live: list[Item], started: float, alone: bool) -> None:
        """Run one batch outside the queue lock; record its results under the bookkeeping lock. When a batch
        of several requests fails, each request is run again on its own, so one bad input fails only its own
        request."""
        key = live[0].request.key
        run = self._run_alone if alone and self._run_alone is not None else self._run_batch
        with self._cond:
            self._running[id(live)] = (started, live)
        try:
            outcomes = [(live, self._call(run, key, live))]
            if isinstance(outcomes[0][1], TrtEmbedError):
                groups: dict[int, list[Item]] = {}
                for item in live:
                    groups.setdefault(id(item.request), []).append(item)
                if len(groups) > 1:
                    with self._book:
                        self.stats.failed_batches += 1
                    outcomes = [(group, self._call(self._run_batch, key, group)) for group in groups.values()]
        finally:
            with self._cond:
                self._running.pop(id(live), None)
            self._idle()
        for items, outcome in outcomes:
            self._finish(items, outcome, started, alone)

    def _call(self, run: RunBatch, key: BatchKey, items: list[Item]) -> list[Row] | TrtEmbedError:
        try:
            return run(key, [i.request.items[i.index] for i in items])
        except Exception as exc:
            return exc if isinstance(exc, TrtEmbedError) else EngineError(f"inference failed: {exc}")

    def _finish(self, items: list[Item], outcome: list[Row] | TrtEmbedError, started: float, alone: bool) -> None:
        if isinstance(outcome, TrtEmbedError):
            with self._book:
                self.stats.failed_batches += 1
                for item in items:
                    self._fail(item.request, outcome)
            return
        elapsed = time.perf_counter() - started
        rows = sum(i.rows for i in items)
        tokens = self.spec.batch_cost(rows, max(i.length for i in items), sum(i.real for i in items))
        with self._book:
            self.stats.batches += 1
            self.stats.alone_batches += alone
            self.stats.inputs += rows
            self.stats.batch_tokens += tokens
            for item, row in zip(items, outcome, strict=True):
                self._complete(item, row, elapsed)
        if self._on_batch is not None:
            self._on_batch(rows, tokens, elapsed)

    def _watch(self) -> None:
        """Watchdog: answer the callers of an engine call that runs past `engine_timeout` with an error."""
        assert self.engine_timeout is not None
        while not self._stopped.wait(min(1.0, self.engine_timeout / 4)):
            now = time.perf_counter()
            with self._cond:
                late = [items for started, items in self._running.values() if now - started > self.engine_timeout]
            for items in late:
                error = EngineError(f"the engine call ran past the {self.engine_timeout:g} s timeout; retry later")
                with self._book:
                    for item in items:
                        self._fail(item.request, error)

    @staticmethod
    def _fail(request: Pending, error: BaseException) -> None:
        if not request.done:
            request.done = True
            with contextlib.suppress(InvalidStateError):  # the caller gave up (cancelled) meanwhile
                request.future.set_exception(error)

    @staticmethod
    def _complete(item: Item, row: Row, elapsed: float) -> None:
        """Store one unit's row (a token block's: its rows); the request's share of batch time is proportional
        to its inputs."""
        request = item.request
        if request.done:
            return
        request.rows[item.index] = row
        request.remaining -= 1
        request.inference_seconds += elapsed * item.rows / item.batch_rows
        if request.remaining == 0:
            request.done = True
            started = request.first_started or request.enqueued
            result = EngineRows(
                rows=[r for r in request.rows if r is not None],
                queue_seconds=started - request.enqueued,
                inference_seconds=request.inference_seconds,
                batches=request.batches,
            )
            with contextlib.suppress(InvalidStateError):  # the caller gave up (cancelled) meanwhile
                request.future.set_result(result)

"""The request pipeline: validate EVERYTHING -> prepare -> schedule -> post-process -> encode (or score).

Validation needs no tokenizer and no engine: a request that cannot be answered is refused before any work is
done or queued. Every entry point (sync, async, HTTP, Ray) goes through `admit` (the common checks, then the
route's), then `run` or `arun`, written once over the routes (`routes/`): the route that serves a request prepares
it in chunks, the scheduler runs its groups, the route puts the rows back together.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from trt_embed.errors import InvalidRequest, UnknownModel
from trt_embed.manifest import Manifest
from trt_embed.runtime.batching.scheduler import Scheduler
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.kinds import kind_of
from trt_embed.runtime.outputs import by_kind as kinds
from trt_embed.runtime.outputs import encoding
from trt_embed.runtime.outputs.assemble import Plan, embed_result
from trt_embed.runtime.outputs.postprocess import check_dimensions
from trt_embed.runtime.outputs.scoring import (
    cross_encoder_runs,
    pair_inputs,
    pair_scores,
    score_errors,
    score_requests,
    score_result,
    side_request,
)
from trt_embed.runtime.routes import Job, Route, Staged
from trt_embed.runtime.text.prepare import Preparer, token_limit
from trt_embed.runtime.types import (
    POOLING_TASKS,
    TRUNCATE_MODES,
    EmbedRequest,
    EmbedResult,
    Observer,
    Row,
    ScoreRequest,
    ScoreResult,
    Timing,
    Vectors,
)


class Pipeline:
    """One artifact's request path. Thread-safe; shares one scheduler among all callers."""

    def __init__(
        self,
        manifest: Manifest,
        preparer: Preparer,
        scheduler: Scheduler,
        routes: Sequence[Route],
        *,
        variants: list[str],
        default_variant: str,
        outputs: list[str],
        observers: list[Observer],
    ) -> None:
        self.routes = list(routes)  # tried in order: the first that serves a request runs it
        self.manifest = manifest
        self.kind = kind_of(manifest.kind)
        self.preparer = preparer
        self.scheduler = scheduler
        self.variants = variants
        self.default_variant = default_variant
        self.outputs = outputs
        self.observers = observers
        self._prepare_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trt-embed-prepare")

    # -- validate ---------------------------------------------------------------------------------------------

    def check(self, request: EmbedRequest) -> Plan:
        """Every check that needs no tokenization; raises `InvalidRequest` / `UnknownModel` (or `Overloaded`)."""
        return self.admit(request)[0]

    def _plan(self, request: EmbedRequest) -> Plan:
        """The checks every route shares: tasks, variant, outputs, dimensions, encodings, options."""
        for task in (request.task, *request.also):
            if task not in POOLING_TASKS:
                raise InvalidRequest(f"pooling task must be one of {', '.join(POOLING_TASKS)}, got {task!r}", "task")
        variant = request.variant or self.default_variant
        if variant not in self.variants:
            raise UnknownModel(f"variant {variant!r} is not served; available: {', '.join(self.variants)}")
        for name in kinds.batch_output(self.manifest.kind, request).split("+"):
            if name not in self.outputs:
                raise InvalidRequest(f"this artifact does not export {name} (task {request.task!r})", "task")
        kinds.check_sparse_options(request)
        token_level = request.task in ("token_embed", "token_classify")
        if token_level and request.dimensions is not None:
            raise InvalidRequest("dimensions apply to the embed task only, not token_embed", "dimensions")
        dims = check_dimensions(self.manifest, request.dimensions)
        width = self.manifest.hidden_size if token_level else (dims or self.manifest.embedding_dim)
        encoding.check_encodings(
            request.encodings, request.embed_dtype, request.endianness, dimension=width, token_level=token_level
        )
        normalize = request.normalize
        if normalize is False and self.manifest.graph_normalized and not token_level:
            raise InvalidRequest(
                "this artifact's graph returns normalized vectors, so unnormalized ones cannot be had; "
                "re-export it with a graph that pools without normalizing",
                "normalize",
            )
        if normalize is None:  # pooled vectors follow the model's config; token vectors come as computed
            normalize = False if token_level else self.manifest.normalize
        ranges = None
        if any(e in ("int8", "uint8") for e in request.encodings):
            ranges = encoding.quantization_ranges(self.manifest, dims, normalized=normalize)
        if request.truncate not in TRUNCATE_MODES:
            raise InvalidRequest(
                f"truncate must be one of {', '.join(TRUNCATE_MODES)}, got {request.truncate!r}", "truncate"
            )
        token_limit(request.truncate_prompt_tokens, self.manifest.max_seq_length)
        request.chat.check()
        if isinstance(request.priority, bool) or not isinstance(request.priority, int):
            raise InvalidRequest(f"priority must be an integer, got {request.priority!r}", "priority")
        self.preparer.resolve_prompt(request.prompt_name, request.prompt)
        return Plan(request=request, variant=variant, dimensions=dims, normalize=bool(normalize), ranges=ranges)

    def admit(self, request: EmbedRequest) -> tuple[Plan, Route]:
        """The common checks, then the route's own, then the queue's room: the request and the route it runs."""
        plan = self._plan(request)
        route = next(r for r in self.routes if r.serves(request))
        self.scheduler.admit(route.check(request))
        return plan, route

    # -- run --------------------------------------------------------------------------------------------------

    def run(self, request: EmbedRequest) -> EmbedResult:
        """Answer one request on the caller's thread. A large request streams through in chunks: the next chunk
        is prepared while the current one runs."""
        plan, route = self.admit(request)
        started = time.perf_counter()
        job = route.start(request, plan.variant)
        timing, tokens = Timing(), 0
        pending: collections.deque[tuple[Staged, list[Future[EngineRows]]]] = collections.deque()
        for chunk in job.chunks():
            staged = job.prepare(chunk)
            tokens += staged.tokens
            pending.append((staged, self._submit(staged, request.priority)))
            if len(pending) > 1:
                done, futures = pending.popleft()
                _take(job, done, [f.result() for f in futures], timing)
        while pending:
            done, futures = pending.popleft()
            _take(job, done, [f.result() for f in futures], timing)
        return self._result(plan, *job.answer(), tokens, _prepared(timing, started))

    async def arun(self, request: EmbedRequest) -> EmbedResult:
        """Answer one request from the event loop: prepared off the loop (small ones in place, where the Rust
        tokenizer takes less time than the hop to a thread and back), then awaited; streamed as `run` does."""
        plan, route = self.admit(request)
        started = time.perf_counter()
        job = route.start(request, plan.variant)
        inline, loop = route.inline(request), asyncio.get_running_loop()
        timing, tokens = Timing(), 0
        pending: collections.deque[tuple[Staged, list[Future[EngineRows]]]] = collections.deque()
        for chunk in job.chunks():
            if inline:
                staged = job.prepare(chunk)
            else:
                staged = await loop.run_in_executor(self._prepare_pool, job.prepare, chunk)
            tokens += staged.tokens
            pending.append((staged, self._submit(staged, request.priority)))
            if len(pending) > 1:
                done, futures = pending.popleft()
                _take(job, done, [await asyncio.wrap_future(f) for f in futures], timing)
        while pending:
            done, futures = pending.popleft()
            _take(job, done, [await asyncio.wrap_future(f) for f in futures], timing)
        return self._result(plan, *job.answer(), tokens, _prepared(timing, started))

    def _submit(self, staged: Staged, priority: int) -> list[Future[EngineRows]]:
        """Queue a chunk's groups at once, so they run side by side (an empty group: an empty result)."""
        futures = []
        for key, items in staged.groups:
            if items:
                futures.append(self.scheduler.submit(key, items, priority=priority))
            else:
                future: Future[EngineRows] = Future()
                future.set_result(EngineRows([], 0.0, 0.0, 0))
                futures.append(future)
        return futures

    def score(self, request: ScoreRequest) -> ScoreResult:
        runs, finish = self._score_runs(request)
        with score_errors():
            return finish([self.run(r) for r in runs])

    async def ascore(self, request: ScoreRequest) -> ScoreResult:
        runs, finish = self._score_runs(request)
        with score_errors():
            return finish([await self.arun(r) for r in runs])

    def _score_runs(
        self, request: ScoreRequest
    ) -> tuple[list[EmbedRequest], Callable[[list[EmbedResult]], ScoreResult]]:
        """The embed requests a score request needs, and how their results become its scores: by the model kind
        (both sides in one pass, or queries and documents apart), or each side with its own token limit."""
        left, right = pair_inputs(request.first, request.second)
        if self.kind.pairs:  # a cross-encoder: each (first, second) pair through the graph, the activation applied
            return cross_encoder_runs(self.manifest.head_config, request, left, right)
        if request.first_max_tokens is None and request.second_max_tokens is None:
            kind = self.manifest.kind
            runs = score_requests(kind, self.manifest.prompts, request, left, right, self._sides)
            return runs, lambda results: score_result(kind, request, len(left), results)
        sides = [side_request(request, left, request.first_max_tokens)]
        sides.append(side_request(request, right, request.second_max_tokens))
        return sides, lambda results: pair_scores(*results)

    @property
    def _sides(self) -> bool:
        """Whether queries and documents are encoded apart (multi-vector models, inference-free SPLADE)."""
        return self.kind.queries_apart or any(route.splits_queries for route in self.routes)

    def _result(
        self, plan: Plan, rows: list[Row] | Vectors, ids: Sequence[Sequence[int]], num_tokens: int, timing: Timing
    ) -> EmbedResult:
        result = embed_result(self.manifest, self.preparer.tokenizer.id_to_token, plan, rows, ids, num_tokens, timing)
        for observer in self.observers:
            observer.request(timing)
        return result

    def close(self) -> None:
        self.scheduler.close()
        self._prepare_pool.shutdown(wait=True)


def _take(job: Job, staged: Staged, results: list[EngineRows], timing: Timing) -> None:
    """A chunk's results to its job; its groups ran side by side: the longest queue wait, all inference time."""
    if results:
        timing.queue += max(r.queue_seconds for r in results)
        timing.inference += sum(r.inference_seconds for r in results)
        timing.batches += sum(r.batches for r in results)
    job.take(staged, results)


def _prepared(timing: Timing, started: float) -> Timing:
    """The request's time not spent queued or in the engine: its preparation (and the hand-offs)."""
    timing.prepare = max(0.0, time.perf_counter() - started - timing.queue - timing.inference)
    return timing

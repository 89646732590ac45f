"""The request pipeline: validate EVERYTHING -> prepare -> schedule -> post-process -> encode (or score).

Validation needs no tokenizer and no engine: a request that cannot be answered is refused before any work is
done or queued. Every entry point (sync, async, HTTP, Ray) goes through `check`, then `execute`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from trt_embed.errors import InvalidRequest, TooLarge, UnknownModel
from trt_embed.manifest import Manifest
from trt_embed.runtime import encoding
from trt_embed.runtime import outputs as kinds
from trt_embed.runtime.batch import in_request_order, longest_first
from trt_embed.runtime.block_path import STREAM_CHUNK, BlockPath
from trt_embed.runtime.chunking import combine
from trt_embed.runtime.multimodal import MixedRun, check_images, has_images
from trt_embed.runtime.postprocess import check_dimensions
from trt_embed.runtime.prepare import Preparer, token_limit
from trt_embed.runtime.results import Plan, account, embed_result, input_ids
from trt_embed.runtime.scheduler import Scheduler
from trt_embed.runtime.score_sides import pair_scores, score_errors
from trt_embed.runtime.scoring import pair_inputs, score_requests, score_result, side_request
from trt_embed.runtime.static_query import QueryTable
from trt_embed.runtime.types import (
    POOLING_TASKS,
    TRUNCATE_MODES,
    EmbedRequest,
    EmbedResult,
    Inputs,
    Observer,
    Prepared,
    Row,
    ScoreRequest,
    ScoreResult,
    Timing,
    Vectors,
)
from trt_embed.runtime.vlm import VlmPreparer
from trt_embed.runtime.work import Result

INLINE_CHARS = 1024  # async requests up to this many characters (or token ids) are prepared on the caller's thread


class Pipeline:
    """One artifact's request path. Thread-safe; shares one scheduler among all callers."""

    def __init__(
        self,
        manifest: Manifest,
        preparer: Preparer,
        scheduler: Scheduler,
        *,
        variants: list[str],
        default_variant: str,
        outputs: list[str],
        observers: list[Observer],
        max_input_chars: int,
        max_output_values: int,
        mixed: MixedRun | None = None,
        queries: QueryTable | None = None,
        vlm: VlmPreparer | None = None,
    ) -> None:
        self.mixed = mixed  # two-tower models: requests with images
        self.queries = queries  # inference-free SPLADE: queries by a weight table
        self.vlm = vlm  # vision-language models: every request (texts, images, both) is prepared by it
        self.max_input_chars = max_input_chars
        self.max_output_values = max_output_values
        self.manifest = manifest
        self.preparer = preparer
        self.scheduler = scheduler
        self.variants = variants
        self.default_variant = default_variant
        self.outputs = outputs
        self.observers = observers
        self._prepare_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trt-embed-prepare")
        self.blocks = BlockPath(manifest, preparer, scheduler)  # dense embed requests: token blocks

    # -- validate ---------------------------------------------------------------------------------------------

    def check(self, request: EmbedRequest) -> Plan:
        """Every check that needs no tokenization; raises `InvalidRequest` / `UnknownModel`."""
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
        if self.vlm is not None:
            self.scheduler.admit(self.vlm.check(request, self._check_sizes))
            return Plan(request=request, variant=variant, dimensions=dims, normalize=bool(normalize), ranges=ranges)
        if has_images(request):
            self.scheduler.admit(check_images(self.mixed, request, self._check_sizes))
            return Plan(request=request, variant=variant, dimensions=dims, normalize=bool(normalize), ranges=ranges)
        inputs = request.inputs
        if request.messages is None and (inputs is None or isinstance(inputs, str) or len(inputs) == 0):
            self.preparer.tokenize(inputs or [])  # raises the error that names the problem
        self._check_sizes(inputs or [])
        self.scheduler.admit(1 if inputs is None else len(inputs))
        return Plan(request=request, variant=variant, dimensions=dims, normalize=bool(normalize), ranges=ranges)

    def _check_sizes(self, inputs: Inputs) -> None:
        """Inputs too long to ever be tokenized here (a 30 MB text), refused before tokenization."""
        limit = self.max_input_chars
        for n, item in enumerate(inputs):
            if isinstance(item, str) and len(item) > limit:
                raise TooLarge(f"input[{n}] has {len(item)} characters; the limit is {limit}", "input")

    def _check_output(self, request: EmbedRequest, prepared: Prepared) -> None:
        """Token vectors grow with every token: refuse a response larger than the limit before running it."""
        if "token_embed" in (request.task, *request.also):
            values = prepared.num_tokens * self.manifest.hidden_size
            if values > self.max_output_values:
                raise TooLarge(
                    f"token_embed over {prepared.num_tokens} tokens returns {values} values, more than the limit of "
                    f"{self.max_output_values}; send fewer or shorter inputs per request",
                    "input",
                )

    # -- run --------------------------------------------------------------------------------------------------

    def run(self, request: EmbedRequest) -> EmbedResult:
        """Answer one request on the caller's thread. Large requests stream through in chunks: the next chunk
        is prepared while the current one runs."""
        plan = self.check(request)
        if self.queries is not None and self.queries.serves(request):
            return self._result(plan, *self.queries.rows(self.preparer, request))
        if self.mixed is not None and has_images(request):
            mixed, count, took = self.mixed.run(request, plan.variant, self._submitter(request))
            return self._result(plan, list(mixed), [()] * len(mixed), count, took)
        if self.blocks.serves(request):
            return self._result(plan, *self.blocks.run(request, plan.variant))
        started = time.perf_counter()
        inputs = request.inputs
        if request.messages is not None or inputs is None or len(inputs) <= STREAM_CHUNK or self.vlm is not None:
            prepared = self._prepare(request, plan.variant)
            self._check_output(request, prepared)
            timing = Timing(prepare=time.perf_counter() - started)
            future = self.scheduler.submit(prepared.key, prepared.items, priority=request.priority)
            return self._finish(plan, prepared, future.result(), timing)
        rows: list[Row] = []
        ids: list[Sequence[int]] = []
        tokens = 0
        timing = Timing()
        pending: collections.deque[tuple[Prepared, Future[Result]]] = collections.deque()
        order = longest_first(inputs)
        for start in range(0, len(inputs), STREAM_CHUNK):
            positions = order[start : start + STREAM_CHUNK]
            chunk = dataclasses.replace(request, inputs=cast(Inputs, [inputs[i] for i in positions]))
            try:
                prepared = self._prepare(chunk, plan.variant)
            except InvalidRequest as exc:
                raise exc.renumbered(positions) from None
            self._check_output(request, prepared)
            tokens += prepared.num_tokens
            future = self.scheduler.submit(prepared.key, prepared.items, priority=request.priority)
            pending.append((prepared, future))
            ids.extend(input_ids(prepared))
            if len(pending) > 1:
                done, result = pending.popleft()
                rows.extend(self._rows(done, result.result(), timing))
        while pending:
            done, result = pending.popleft()
            rows.extend(self._rows(done, result.result(), timing))
        timing.prepare = time.perf_counter() - started - timing.queue - timing.inference
        return self._result(plan, in_request_order(rows, order), in_request_order(ids, order), tokens, timing)

    async def arun(self, request: EmbedRequest) -> EmbedResult:
        """Answer one request from the event loop: prepared off the loop (small ones in place, where the Rust
        tokenizer takes less time than the hop to a thread and back), then awaited."""
        plan = self.check(request)
        if self.queries is not None and self.queries.serves(request):
            return self._result(plan, *self.queries.rows(self.preparer, request))
        if self.mixed is not None and has_images(request):
            submit, pool = self._submitter(request), self._prepare_pool
            mixed, count, took = await self.mixed.arun(request, plan.variant, submit, pool)
            return self._result(plan, list(mixed), [()] * len(mixed), count, took)
        started = time.perf_counter()
        inputs = request.inputs
        small = request.messages is None and inputs is not None and len(inputs) <= 8 and self.vlm is None
        small = small and sum(len(t) for t in inputs or []) <= INLINE_CHARS
        if self.blocks.serves(request):
            return self._result(plan, *await self.blocks.arun(request, plan.variant, self._prepare_pool, inline=small))
        if small:
            prepared = self._prepare(request, plan.variant)
        else:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(self._prepare_pool, self._prepare, request, plan.variant)
        self._check_output(request, prepared)
        timing = Timing(prepare=time.perf_counter() - started)
        future = self.scheduler.submit(prepared.key, prepared.items, priority=request.priority)
        return self._finish(plan, prepared, await asyncio.wrap_future(future), timing)

    def score(self, request: ScoreRequest) -> ScoreResult:
        left, right = pair_inputs(request.first, request.second)
        with score_errors():
            if request.first_max_tokens is None and request.second_max_tokens is None:
                runs = score_requests(self.manifest.kind, self.manifest.prompts, request, left, right, self._sides)
                return score_result(self.manifest.kind, request, len(left), [self.run(r) for r in runs])
            first = self.run(side_request(request, left, request.first_max_tokens))
            second = self.run(side_request(request, right, request.second_max_tokens))
            return pair_scores(first, second)

    async def ascore(self, request: ScoreRequest) -> ScoreResult:
        left, right = pair_inputs(request.first, request.second)
        with score_errors():
            if request.first_max_tokens is None and request.second_max_tokens is None:
                runs = score_requests(self.manifest.kind, self.manifest.prompts, request, left, right, self._sides)
                return score_result(self.manifest.kind, request, len(left), [await self.arun(r) for r in runs])
            first = await self.arun(side_request(request, left, request.first_max_tokens))
            second = await self.arun(side_request(request, right, request.second_max_tokens))
            return pair_scores(first, second)

    @property
    def _sides(self) -> bool:
        """Whether queries and documents are encoded apart (multi-vector models, inference-free SPLADE)."""
        return self.manifest.kind == "multi_vector" or self.queries is not None

    def _submitter(self, request: EmbedRequest) -> Callable[[Prepared], Future[Result]]:
        return lambda prepared: self.scheduler.submit(prepared.key, prepared.items, priority=request.priority)

    def _prepare(self, request: EmbedRequest, variant: str) -> Prepared:
        """Tokenize, and read the graph outputs the request's tasks need in this model kind."""
        if self.vlm is not None:
            return self.vlm.prepare(request, variant, self.preparer.resolve_prompt(request.prompt_name, request.prompt))
        if self.manifest.kind == "multi_vector":
            request = kinds.multi_vector_request(self.manifest.head_config, request)
        prepared = kinds.expand_query(self.manifest.head_config, request, self.preparer.prepare(request, variant))
        output = kinds.batch_output(self.manifest.kind, request)
        return dataclasses.replace(prepared, key=dataclasses.replace(prepared.key, output=output))

    @staticmethod
    def _rows(prepared: Prepared, result: Result, timing: Timing) -> list[Row]:
        """One row per input: chunked inputs' pieces combined (token-weighted mean)."""
        rows = account(result, timing)
        if prepared.counts is None:
            return rows
        return list(combine(cast(list[Vectors], rows), prepared.counts, [item.cost for item in prepared.items]))

    def _finish(self, plan: Plan, prepared: Prepared, result: Result, timing: Timing) -> EmbedResult:
        rows = self._rows(prepared, result, timing)
        return self._result(plan, rows, input_ids(prepared), prepared.num_tokens, timing)

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

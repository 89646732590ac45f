"""Texts (or token-id lists, or chat messages) one input at a time: every task and model kind, chunked processing
of long inputs, ColBERT queries; a large request streams in chunks of `STREAM_CHUNK` inputs, longest first."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy.typing as npt

from trt_embed.engines.base import Batch, Engine
from trt_embed.errors import InvalidRequest, TooLarge
from trt_embed.runtime.batching.batch import in_request_order, longest_first, make_batch, rows_of
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.images.two_tower import has_images
from trt_embed.runtime.outputs import by_kind as kinds
from trt_embed.runtime.outputs.assemble import input_ids
from trt_embed.runtime.routes.base import Answer, Job, Route, RouteContext, Staged
from trt_embed.runtime.text.chunking import combine
from trt_embed.runtime.types import BatchKey, EmbedRequest, Inputs, Prepared, PreparedInput, Row, Vectors

STREAM_CHUNK = 1024  # inputs prepared per step of a large request, at most
INLINE_CHARS = 1024  # async requests up to this many characters (or token ids) are prepared on the caller's thread


class TextRoute(Route):
    """Every text request no other route takes: the default route, last in the table."""

    name = "text"

    def __init__(self, context: RouteContext) -> None:
        self.context = context
        self.manifest = context.manifest
        self.preparer = context.preparer
        self.kind = context.kind
        vision = context.manifest.vision
        self.text_padding = vision.get("text_padding") if vision else None  # SigLIP: texts padded to max length

    @classmethod
    def build(cls, context: RouteContext) -> TextRoute | None:
        return cls(context)

    def serves(self, request: EmbedRequest) -> bool:
        return True

    def check(self, request: EmbedRequest) -> int:
        if has_images(request):
            raise InvalidRequest("this model embeds text only; images need a CLIP or SigLIP model", "input")
        inputs = request.inputs
        if request.messages is None and (inputs is None or isinstance(inputs, str) or len(inputs) == 0):
            self.preparer.tokenize(inputs or [])  # raises the error that names the problem
        self.context.limits.check_sizes(inputs or [])
        return 1 if inputs is None else len(inputs)

    def inline(self, request: EmbedRequest) -> bool:
        inputs = request.inputs
        if request.messages is not None or inputs is None or len(inputs) > 8:
            return False
        return sum(len(t) for t in inputs) <= INLINE_CHARS

    def start(self, request: EmbedRequest, variant: str) -> Job:
        return TextJob(self, request, variant)

    def prepare(self, request: EmbedRequest, variant: str) -> Prepared:
        """Tokenize, and read the graph outputs the request's tasks need in this model kind."""
        head = self.manifest.head_config
        if self.kind.queries_apart:
            request = kinds.multi_vector_request(head, request)
        prepared = kinds.expand_query(head, request, self.preparer.prepare(request, variant))
        output = kinds.batch_output(self.manifest.kind, request)
        prepared = dataclasses.replace(prepared, key=dataclasses.replace(prepared.key, output=output))
        self.check_output(request, prepared)
        return prepared

    def check_output(self, request: EmbedRequest, prepared: Prepared) -> None:
        """Token vectors grow with every token: refuse a response larger than the limit before running it."""
        limit = self.context.limits.max_output_values
        if "token_embed" in (request.task, *request.also):
            values = prepared.num_tokens * self.manifest.hidden_size
            if values > limit:
                raise TooLarge(
                    f"token_embed over {prepared.num_tokens} tokens returns {values} values, more than the limit of "
                    f"{limit}; send fewer or shorter inputs per request",
                    "input",
                )

    def batch(self, engine: Engine, key: BatchKey, items: Sequence[PreparedInput]) -> Batch:
        info = self.manifest.tokenizer
        return make_batch(
            key,
            items,
            layout=engine.layout,
            pad_id=info.pad_token_id,
            padding_side=info.padding_side,
            pooling_mask="pooling_mask" in engine.input_names,
            length=self.text_padding,
        )

    def rows(
        self, key: BatchKey, items: Sequence[PreparedInput], batch: Batch, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> list[Row]:
        names = key.output.split("+")
        side = self.manifest.tokenizer.padding_side
        if len(names) == 1:
            return list(rows_of(batch, names[0], outputs[names[0]], side))
        per_output = {name: rows_of(batch, name, outputs[name], side) for name in names}
        return [{name: rows[n] for name, rows in per_output.items()} for n in range(batch.size)]


class TextJob(Job):
    """A request in one piece, or (more than `STREAM_CHUNK` inputs) in chunks, longest inputs first."""

    def __init__(self, route: TextRoute, request: EmbedRequest, variant: str) -> None:
        self.route, self.request, self.variant = route, request, variant
        inputs = request.inputs
        streams = request.messages is None and inputs is not None and len(inputs) > STREAM_CHUNK
        self.order = longest_first(inputs) if streams and inputs is not None else None
        self.found: list[Row] = []
        self.ids: list[Sequence[int]] = []

    def chunks(self) -> Iterable[list[int] | None]:
        if self.order is None:
            return [None]
        return [self.order[start : start + STREAM_CHUNK] for start in range(0, len(self.order), STREAM_CHUNK)]

    def prepare(self, chunk: list[int] | None) -> Staged:
        request = self.request
        if chunk is not None:
            inputs = cast(Inputs, request.inputs)
            request = dataclasses.replace(request, inputs=cast(Inputs, [inputs[i] for i in chunk]))
        try:
            prepared = self.route.prepare(request, self.variant)
        except InvalidRequest as exc:
            if chunk is None:
                raise
            raise exc.renumbered(chunk) from None
        return Staged([(prepared.key, prepared.items)], prepared.num_tokens, prepared)

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        prepared: Prepared = staged.state
        rows = results[0].rows
        if prepared.counts is not None:  # chunked inputs' pieces combined (token-weighted mean)
            costs = [item.cost for item in prepared.items]
            rows = list(combine(cast(list[Vectors], rows), prepared.counts, costs))
        self.found.extend(rows)
        self.ids.extend(input_ids(prepared))

    def answer(self) -> Answer:
        if self.order is None:
            return self.found, self.ids
        return in_request_order(self.found, self.order), in_request_order(self.ids, self.order)

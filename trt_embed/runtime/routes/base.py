"""The interface every kind of work implements, and what the pipeline and the engine pool hand it.

A `Route` has two halves. The request half runs on the caller's side: `serves` (is this request mine?), `check`
(every check before any preparation; returns the number of inputs the queue admits) and `start` (a `Job`: the
request's chunks, each prepared into groups for the scheduler, and the rows put back together). The engine half
runs on a scheduler worker: `batch` turns the scheduled items of one batch key into an `engines.Batch`, `rows`
turns the engine's outputs back into one row per item. A batch key names the route whose engine half runs it
(`BatchKey.route`), so the workers and the engine pool never branch on what kind of work they carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy.typing as npt

from trt_embed.engines.base import Batch, Engine
from trt_embed.errors import TooLarge
from trt_embed.manifest import Manifest
from trt_embed.runtime.batching.scheduler import Scheduler
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.kinds import ModelKind, kind_of
from trt_embed.runtime.options import RuntimeOptions
from trt_embed.runtime.text.prepare import Preparer
from trt_embed.runtime.types import BatchKey, EmbedRequest, Inputs, PreparedInput, Row, Vectors

Group = tuple[BatchKey, Sequence[PreparedInput]]  # inputs queued together under one batch key
Answer = tuple["list[Row] | Vectors", Sequence[Sequence[int]]]  # rows in request order, each input's token ids


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's limits on what one request may carry."""

    max_input_chars: int
    max_output_values: int

    @classmethod
    def of(cls, options: RuntimeOptions, max_seq_length: int) -> Limits:
        """The options' limits; no text limit given: 20 characters per token of the model's limit, at least 100,000."""
        chars = options.max_input_chars or max(100_000, 20 * max_seq_length)
        return cls(max_input_chars=chars, max_output_values=options.max_output_values)

    def check_sizes(self, inputs: Inputs) -> None:
        """Inputs too long to ever be tokenized here (a 30 MB text), refused before tokenization."""
        limit = self.max_input_chars
        for n, item in enumerate(inputs):
            if isinstance(item, str) and len(item) > limit:
                raise TooLarge(f"input[{n}] has {len(item)} characters; the limit is {limit}", "input")


@dataclasses.dataclass(frozen=True)
class RouteContext:
    """What routes are built from: one artifact's facts, its preparer and scheduler, its engines."""

    directory: Path
    manifest: Manifest
    preparer: Preparer
    scheduler: Scheduler
    options: RuntimeOptions
    limits: Limits
    image_engine: Engine | None  # two-tower and vision-language models: the image graph

    @property
    def kind(self) -> ModelKind:
        return kind_of(self.manifest.kind)


@dataclasses.dataclass
class Staged:
    """One chunk of a request, prepared: the groups to queue (none: answered without an engine) and what the
    job needs to take their results back."""

    groups: list[Group]
    tokens: int
    state: Any = None


class Job:
    """One request on its route: its chunks (a large request streams: the next chunk is prepared while the
    current one runs), each prepared into `Staged` groups, their results taken back, then the answer."""

    def chunks(self) -> Iterable[Any]:
        raise NotImplementedError

    def prepare(self, chunk: Any) -> Staged:
        """CPU work (tokenizing, decoding images): on the caller's thread or a preparation thread."""
        raise NotImplementedError

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        """The results of a chunk's groups, in the order of `staged.groups`."""
        raise NotImplementedError

    def answer(self) -> Answer:
        raise NotImplementedError


class Route:
    """One kind of work. Subclasses set `name` (the `BatchKey.route` of their batches) and `tower` (which graph
    runs them), and implement `build`, `serves`, `check`, `start`; those that queue batches of their own implement
    `batch` and `rows`.

    Adding a kind of work (a cross-encoder scoring input pairs, a classifier):
    1. a subclass here in `routes/`: `serves` picks its requests (by the model kind's row in `kinds.KINDS`, or by
       what the request holds), `check` refuses what it cannot answer before any work, `start` returns a `Job`
       whose `prepare` makes `PreparedInput`s (a pair tokenized as one sequence with its token types), `batch`
       pads them into the graph's inputs and `rows` cuts the output into one row per input (a logit row per pair);
    2. one line in `routes.ROUTES`, before the routes it must win over (the table is read in order);
    3. a row in `kinds.KINDS` for a new model kind (its tasks and outputs), and tests under tests/runtime/.
    """

    name: ClassVar[str]
    tower: ClassVar[Literal["text", "image"]] = "text"
    splits_queries: ClassVar[bool] = False  # score encodes queries and documents apart (a query-side table)

    @classmethod
    def build(cls, context: RouteContext) -> Route | None:
        """This route for an artifact, or None where the artifact has no such work."""
        raise NotImplementedError

    def serves(self, request: EmbedRequest) -> bool:
        raise NotImplementedError

    def check(self, request: EmbedRequest) -> int:
        """Checks of this kind of work that need no preparation (after the pipeline's common ones); returns the
        number of inputs the queue must admit."""
        raise NotImplementedError

    def start(self, request: EmbedRequest, variant: str) -> Job:
        raise NotImplementedError

    def inline(self, request: EmbedRequest) -> bool:
        """Whether the async path prepares this request on the event loop (cheaper than a thread hop)."""
        return False

    def batch(self, engine: Engine, key: BatchKey, items: Sequence[PreparedInput]) -> Batch:
        raise NotImplementedError(f"the {self.name} route queues no batches of its own")

    def rows(
        self, key: BatchKey, items: Sequence[PreparedInput], batch: Batch, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> list[Row]:
        """One row per item: the pooled output read (routes whose rows are cut otherwise override this)."""
        return list(outputs[key.output])


class WholeJob(Job):
    """A request prepared and queued in one piece (no chunks); `prepare` fills `ids`, `take` collects the rows in
    request order."""

    def __init__(self, route: Any, request: EmbedRequest, variant: str) -> None:
        self.route, self.request, self.variant = route, request, variant
        self.found: list[Row] = []
        self.ids: list[Sequence[int]] = []

    def chunks(self) -> Iterable[None]:
        return [None]

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        self.found.extend(results[0].rows)

    def answer(self) -> Answer:
        return self.found, self.ids

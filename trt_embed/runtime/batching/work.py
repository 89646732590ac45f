"""What the scheduler keeps per request and per queued input, and what it hands back."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Future

from trt_embed.runtime.types import BatchKey, PreparedInput, Row


@dataclasses.dataclass
class EngineRows:
    """Per-input outputs of one request, in input order, with where its time went."""

    rows: list[Row]
    queue_seconds: float
    inference_seconds: float
    batches: int


@dataclasses.dataclass(eq=False)
class Pending:
    key: BatchKey
    items: Sequence[PreparedInput]
    future: Future[EngineRows]
    enqueued: float
    rows: list[Row | None]
    remaining: int
    first_started: float | None = None
    inference_seconds: float = 0.0  # this request's share of the time of the batches it ran in
    batches: int = 0
    done: bool = False


@dataclasses.dataclass
class Item:
    priority: int
    seq: int
    request: Pending = dataclasses.field(compare=False)
    index: int = dataclasses.field(compare=False)
    length: int = dataclasses.field(default=0, compare=False)  # the unit's longest row (tokens for text)
    real: int = dataclasses.field(default=0, compare=False)  # its cost: real tokens (one input: = length)
    rows: int = dataclasses.field(default=1, compare=False)  # inputs in it (a token block: many)
    batch_rows: int = dataclasses.field(default=1, compare=False)  # inputs in the batch it ran in
    taken: bool = dataclasses.field(default=False, compare=False)  # in a batch already (the heap drops it lazily)

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

"""What the API modules share: the registry of served models and one internal request path."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from trt_embed.errors import InvalidRequest, UnknownModel
from trt_embed.runtime import Runtime
from trt_embed.runtime.postprocess import Vectors
from trt_embed.runtime.requests import Inputs, PoolingTask
from trt_embed.server.errors import HTTPError
from trt_embed.server.metrics import Metrics


@dataclasses.dataclass
class Settings:
    api_key: str | None = None
    max_client_batch_size: int = 2048
    max_body_bytes: int = 32 * 1024 * 1024


@dataclasses.dataclass
class Served:
    """One name a client can put in `model`: an artifact's variant."""

    name: str
    runtime: Runtime
    variant: str
    created: int


class Registry:
    """Served model names -> runtimes; the first model is the default when a request names none."""

    def __init__(self) -> None:
        self.models: dict[str, Served] = {}
        self.aliases: dict[str, str] = {}  # another accepted name -> the served name (not listed in /v1/models)
        self._runtimes: list[Runtime] = []

    def add(self, runtime: Runtime, name: str, aliases: Sequence[str] = ()) -> None:
        """Serve `runtime` as `name` (also accepting `aliases`), and each of its LoRA variants under the
        variant's name."""
        self._runtimes.append(runtime)
        now = int(time.time())
        for variant in runtime.variants:
            served_name = name if variant == runtime.default_variant else variant
            if served_name in self.models:
                raise InvalidRequest(f"two served models are named {served_name!r}; pass distinct --served-model-name")
            self.models[served_name] = Served(served_name, runtime, variant, now)
        for alias in aliases:
            self.aliases.setdefault(alias, name)

    def get(self, name: str | None) -> Served:
        if not name:
            return next(iter(self.models.values()))
        name = name if name in self.models else self.aliases.get(name, name)
        if name not in self.models:
            raise UnknownModel(f"model {name!r} is not served here; served models: {', '.join(self.models)}")
        return self.models[name]

    @property
    def runtimes(self) -> list[Runtime]:
        return self._runtimes

    def healthy(self) -> bool:
        return bool(self._runtimes) and all(r.health() for r in self._runtimes)

    def close(self) -> None:
        for runtime in self._runtimes:
            runtime.close()


@dataclasses.dataclass
class Context:
    """What every handler needs: `request.app.state.ctx`."""

    registry: Registry
    settings: Settings
    metrics: Metrics


@dataclasses.dataclass
class Outcome:
    """Rows of one request plus accounting for usage and the timing headers."""

    rows: list[Vectors]
    num_tokens: int
    tokenization_seconds: float
    queue_seconds: float
    inference_seconds: float

    def headers(self, request_id: str) -> dict[str, str]:
        ms = {
            "x-tokenization-time": self.tokenization_seconds,
            "x-queue-time": self.queue_seconds,
            "x-inference-time": self.inference_seconds,
        }
        out = {k: f"{v * 1000:.3f}" for k, v in ms.items()}
        out["x-request-id"] = request_id
        return out


async def run(
    ctx: Context,
    served: Served,
    inputs: Inputs,
    *,
    task: PoolingTask = "embed",
    priority: int = 0,
    **options: Any,
) -> Outcome:
    """Validate size, tokenize off the event loop, queue, and wait for the rows."""
    if (
        isinstance(inputs, Sequence)
        and not isinstance(inputs, str)
        and len(inputs) > ctx.settings.max_client_batch_size
    ):
        raise HTTPError(
            413,
            f"{len(inputs)} inputs in one request; the limit is {ctx.settings.max_client_batch_size} "
            "(--max-client-batch-size)",
            "RequestTooLargeError",
            "input",
        )
    started = time.perf_counter()
    prepared = await served.runtime.aprepare(inputs, task=task, model=served.variant, **options)
    tokenized = time.perf_counter()
    result = await served.runtime.arun(prepared, priority=priority)
    ctx.metrics.observe_request(tokenized - started, result.queue_seconds)
    return Outcome(
        rows=result.rows,
        num_tokens=prepared.num_tokens,
        tokenization_seconds=tokenized - started,
        queue_seconds=result.queue_seconds,
        inference_seconds=result.inference_seconds,
    )


def finish(served: Served, outcome: Outcome, *, dimensions: int | None, normalize: bool | None) -> Vectors:
    return served.runtime.finish_embeddings(np.stack(outcome.rows), dimensions=dimensions, normalize=normalize)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def truncate_side(value: str | None, default: str = "end") -> str:
    """OpenAI/vLLM `truncation_side` (left/right) and Cohere `truncate` (START/END/NONE) -> ours."""
    if value is None:
        return default
    mapping = {"left": "start", "right": "end", "start": "start", "end": "end", "none": "none"}
    key = value.lower()
    if key not in mapping:
        raise InvalidRequest(
            f"truncation side must be one of left, right (or START, END, NONE), got {value!r}", "truncate"
        )
    return mapping[key]

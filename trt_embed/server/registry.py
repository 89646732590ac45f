"""What the API modules share: settings, the registry of served models, and small translation helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Sequence, Sized
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator
from starlette.requests import Request

from trt_embed.errors import InvalidRequest, UnknownModel
from trt_embed.runtime import Runtime, Timing
from trt_embed.server.errors import HTTPError
from trt_embed.server.metrics import Metrics


@dataclasses.dataclass
class Settings:
    api_key: str | None = None
    max_client_batch_size: int = 2048
    max_body_bytes: int = 32 * 1024 * 1024
    # Requests may not ask for a priority below this (lower runs first), so one client cannot starve the rest.
    min_priority: int = 0
    allowed_hosts: list[str] | None = None  # Host header values served (`*.example.com` wildcards); None: any
    # Over-long inputs: refused with a 400 by default (as the reference); True cuts them at the model's limit
    # instead (text-embeddings-inference's `--auto-truncate`).
    auto_truncate: bool = False
    # A `chat_template` sent with a request runs on this server: refused unless trusted (as the reference).
    trust_request_chat_template: bool = False


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
        self.draining = False  # set on SIGTERM: /health answers 503 while accepted work finishes
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

    def task_variant(self, served: Served, prompt_name: str | None) -> Served:
        """A model whose variants are tasks (jina-embeddings-v3) runs the variant whose task prompt the request
        resolved to; other models, and variants named explicitly, run as served."""
        if served.variant != served.runtime.default_variant:
            return served
        variant = served.runtime.variant_for_prompt(prompt_name)
        return self.models.get(variant, served) if variant is not None else served

    @property
    def runtimes(self) -> list[Runtime]:
        return self._runtimes

    def healthy(self) -> bool:
        return not self.draining and bool(self._runtimes) and all(r.health() for r in self._runtimes)

    def close(self) -> None:
        for runtime in self._runtimes:
            runtime.close()


@dataclasses.dataclass
class Context:
    """What every handler needs: `request.app.state.ctx`."""

    registry: Registry
    settings: Settings
    metrics: Metrics


def check_batch_size(ctx: Context, inputs: Sized, param: str = "input") -> None:
    """413 for more inputs in one request than `--max-client-batch-size`."""
    if len(inputs) > ctx.settings.max_client_batch_size:
        raise HTTPError(
            413,
            f"{len(inputs)} inputs in one request; the limit is {ctx.settings.max_client_batch_size} "
            "(--max-client-batch-size)",
            "RequestTooLargeError",
            param,
        )


def check_priority(ctx: Context, priority: int) -> None:
    if priority < ctx.settings.min_priority:
        raise InvalidRequest(
            f"priority {priority} is below this server's minimum of {ctx.settings.min_priority} (--min-priority)",
            "priority",
        )


async def answered(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, unless the client disconnects first: then the work is cancelled (its queued inputs are
    dropped, nobody runs them) and the request ends with 499."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise HTTPError(499, "the client disconnected before the answer was ready", "ClientClosedRequest")


def timing_headers(timing: Timing, request_id: str) -> dict[str, str]:
    """Where the request's time went, in milliseconds, plus its id."""
    ms = {"x-tokenization-time": timing.prepare, "x-queue-time": timing.queue, "x-inference-time": timing.inference}
    out = {k: f"{v * 1000:.3f}" for k, v in ms.items()}
    out["x-request-id"] = request_id
    return out


TokenIds = list[int]
Input = str | list[str] | TokenIds | list[TokenIds]
T = TypeVar("T")


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _input_shape(value: Any) -> Any:
    """Only the four input forms pass, with no booleans taken for token ids and no floats."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and (
        all(isinstance(v, str) for v in value)
        or all(_is_token_id(v) for v in value)
        or all(isinstance(v, list) and all(_is_token_id(t) for t in v) for v in value)
    ):
        return value
    raise ValueError("expected a string, a list of strings, a list of integer token ids, or a list of such lists")


StrictInput = Annotated[Input, BeforeValidator(_input_shape)]


def as_inputs(value: Input) -> list[str] | list[TokenIds]:
    """OpenAI's and vLLM's input forms as one list: a string, strings, one token list or token lists."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [[int(v) for v in value]]  # type: ignore[arg-type]
    if not value:
        raise InvalidRequest("`input` is empty: pass at least one text", "input")
    return list(value)  # type: ignore[return-value]


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

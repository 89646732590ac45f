"""`RuntimeOptions`: how a runtime runs its artifact (backend, precision, threads, budgets, queue)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """None means the default for the chosen backend (see `trt_embed.engines.select.TABLE`)."""

    backend: str = "auto"
    precision: str = "fp32"
    variant: str = "base"  # the default variant (LoRA adapter name, or "base")
    threads: int | None = None  # threads per engine call
    verify: bool = True  # check every engine file's sha256 when it is opened
    max_batch_tokens: int | None = None
    max_batch_size: int | None = None
    max_queue: int | None = None  # inputs waiting; a request that would exceed it is refused (Overloaded)
    workers: int | None = None  # engine calls run at once per device (CPU: one single-threaded call per core)
    # GPUs to run on, one engine each, the scheduler's workers spread over them: indices, "all", or None (GPU 0).
    # CPU backends have one device, the CPU, and spread over its cores with `workers`.
    devices: tuple[int, ...] | Literal["all"] | None = None
    # With several single-threaded CPU workers, a second engine over all cores runs a batch that is the only
    # work queued or running (a lone query then takes about half the time); it costs one more copy of the weights.
    latency_engine: bool = True
    # How CPU engine calls use the cores: "auto" measures both layouts on first load (cached per CPU and graph);
    # "per-core": one single-threaded call per core (+ the latency engine); "all-cores": one call over all cores.
    cpu_layout: Literal["auto", "per-core", "all-cores"] = "auto"
    # Limits that keep one request from taking the process down, checked before any work is done:
    max_input_chars: int | None = None  # per text; None: max(100,000, 20 characters per token of the model's limit)
    max_output_values: int = 4_000_000  # floats in one token_embed response (about 48 MB as JSON)
    engine_timeout: float | None = 120.0  # seconds one engine call may take before its callers get an error
    # Chunked processing (the reference's pooler options): `embed` inputs longer than the model's limit are cut
    # into pieces, each pooled, and the pieces combined (token-weighted mean); max_embed_len caps an input's tokens.
    chunked_processing: bool = False
    max_embed_len: int | None = None
    # Images (two-tower models): how many one request may carry (None: any, streamed through in chunks; the server
    # sets --max-images, 64 by default), and where images sent by HTTP clients may come from besides data: URIs
    # (see trt_embed/runtime/images/sources.py); nothing else by default.
    max_images: int | None = None
    max_image_pixels: int = 50_000_000
    max_image_bytes: int = 20 * 1024 * 1024
    image_dir: str | None = None
    image_domains: tuple[str, ...] = ()
    image_timeout: float = 10.0

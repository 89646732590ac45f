"""Prometheus metrics: requests, durations, queue, batches, and where request time goes. Under `serve --processes N`
every server process writes its values to prometheus-client's multiprocess files and /metrics adds them up."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from trt_embed.runtime import Timing

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """This process's metrics; with `multiprocess` (PROMETHEUS_MULTIPROC_DIR set before prometheus-client was
    imported) `render` aggregates every server process's, and a per-process request count shows how the kernel
    spread the connections."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self._queue_size: Callable[[], float] | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("trt_embed_requests", "HTTP requests", ["route", "status"], registry=r)
        self.duration = Histogram(
            "trt_embed_request_duration_seconds", "HTTP request duration", ["route"], buckets=LATENCY, registry=r
        )
        self.queue_size = Gauge(
            "trt_embed_queue_size", "Inputs waiting in the batching queue", multiprocess_mode="livesum", registry=r
        )
        self.process_requests = (
            Gauge(
                "trt_embed_process_requests",
                "HTTP requests answered by each server process (serve --processes N)",
                multiprocess_mode="liveall",
                registry=r,
            )
            if multiprocess
            else None
        )
        self.batch_tokens = Histogram(
            "trt_embed_batch_tokens", "Tokens per engine batch (padded for padded engines)", buckets=TOKENS, registry=r
        )
        self.batch_size = Histogram("trt_embed_batch_size", "Inputs per engine batch", buckets=SIZES, registry=r)
        self.tokenization = Histogram(
            "trt_embed_tokenization_seconds", "Tokenization time per request", buckets=LATENCY, registry=r
        )
        self.queue = Histogram("trt_embed_queue_seconds", "Queue wait per request", buckets=LATENCY, registry=r)
        self.inference = Histogram("trt_embed_inference_seconds", "Engine time per batch", buckets=LATENCY, registry=r)

    def watch_queue(self, size: Callable[[], float]) -> None:
        """Report `size()` as the queue size: read at each scrape, or (several processes, where a gauge cannot
        call back into another process) written after each batch and request, and at this process's scrapes."""
        if self.multiprocess:
            self._queue_size = size
        else:
            self.queue_size.set_function(size)

    def answered(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.duration.labels(route).observe(seconds)
        if self.process_requests is not None:
            self.process_requests.inc()

    # The runtime's observer hook (`Runtime.add_observer`).

    def batch(self, size: int, tokens: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_tokens.observe(tokens)
        self.inference.observe(seconds)
        self._update_queue()

    def request(self, timing: Timing) -> None:
        self.tokenization.observe(timing.prepare)
        self.queue.observe(timing.queue)
        self._update_queue()

    def _update_queue(self) -> None:
        if self._queue_size is not None:
            self.queue_size.set(self._queue_size())

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        self._update_queue()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

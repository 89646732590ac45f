"""Prometheus metrics: requests, durations, queue, batches, and where request time goes."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from trt_embed.runtime import Timing

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("trt_embed_requests", "HTTP requests", ["route", "status"], registry=r)
        self.duration = Histogram(
            "trt_embed_request_duration_seconds", "HTTP request duration", ["route"], buckets=LATENCY, registry=r
        )
        self.queue_size = Gauge("trt_embed_queue_size", "Inputs waiting in the batching queue", registry=r)
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
        self.queue_size.set_function(size)

    # The runtime's observer hook (`Runtime.add_observer`).

    def batch(self, size: int, tokens: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_tokens.observe(tokens)
        self.inference.observe(seconds)

    def request(self, timing: Timing) -> None:
        self.tokenization.observe(timing.prepare)
        self.queue.observe(timing.queue)

    def render(self) -> bytes:
        return generate_latest(self.registry)

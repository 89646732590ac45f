"""`trt-embed serve`: export what needs exporting (in a subprocess), load the runtimes, then run the app under
uvicorn. Everything that can fail at start-up fails before uvicorn starts, as one `error:` line. With
`--processes N` the same plan runs in N server processes (`processes.py`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from trt_embed.defaults import DEFAULT_MODEL_NAME, artifact_for, source_name
from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime import Runtime, RuntimeOptions
from trt_embed.server.app import check_settings, create_app
from trt_embed.server.limits import default_http, limited
from trt_embed.server.metrics import Metrics
from trt_embed.server.registry import Registry, Settings

log = logging.getLogger("trt_embed.server")
DEFAULT_MAX_QUEUE = 8192
MAX_HEADER_BYTES = 16 * 1024  # request line and headers together; a larger head is answered 431 (server/limits.py)


def served_names(models: list[str | None], artifacts: list[Path], given: list[str] | None) -> list[str]:
    """One name per model: --served-model-name, else the name its manifest records (the README's name)."""
    if given:
        if len(given) != len(artifacts):
            raise InvalidRequest(
                f"{len(given)} --served-model-name for {len(artifacts)} models; give one name per model"
            )
        return given
    names = []
    for model, artifact in zip(models, artifacts, strict=True):
        record = Manifest.read(artifact).source  # `name`: what the exporter called it (older ones: `model` only)
        name = str(record.get("name") or source_name(str(record.get("model", ""))))
        names.append(DEFAULT_MODEL_NAME if model is None else name or artifact.name)
    return names


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to the address (not yet listening), or the error `serve` reports if it is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidRequest(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail before loading anything if the address is taken (uvicorn would log it after the load)."""
    bind(host, port).close()


def load_registry(names: list[str], artifacts: list[Path], options: RuntimeOptions) -> Registry:
    """Load every runtime; on a failure close the ones already loaded and re-raise."""
    registry = Registry()
    try:
        for name, artifact in zip(names, artifacts, strict=True):
            runtime = Runtime.load(artifact, options)
            aliases = [artifact.name] if artifact.name != name else []
            registry.add(runtime, name, aliases)
            log.info("serving %s from %s on %s (%s)", name, artifact, runtime.backend, runtime.backend_reason)
    except BaseException:
        registry.close()
        raise
    return registry


def api_key(args: argparse.Namespace) -> str | None:
    """The API key from --api-key-file, --api-key or $TRT_EMBED_API_KEY; an empty one is an error, never
    "no authentication"."""
    given = [
        (source, value)
        for source, value in (
            ("--api-key-file", Path(args.api_key_file).read_text().strip() if args.api_key_file else None),
            ("--api-key", args.api_key),
            ("$TRT_EMBED_API_KEY", os.environ.get("TRT_EMBED_API_KEY")),
        )
        if value is not None
    ]
    if not given:
        return None
    source, key = given[0]
    if not key.strip():
        raise InvalidRequest(f"{source} is empty; give a key, or none at all to serve without authentication")
    return key


class Draining(uvicorn.Server):
    """uvicorn's server with a pre-stop phase: on the first SIGTERM/SIGINT /health turns 503 for
    `delay` seconds while requests are still served, then uvicorn's graceful shutdown drains what was accepted."""

    def __init__(self, config: uvicorn.Config, registry: Registry, delay: float) -> None:
        super().__init__(config)
        self.registry = registry
        self.delay = delay
        self._stopping = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.delay <= 0 or self._stopping:
            super().handle_exit(sig, frame)
            return
        self._stopping = True
        self.registry.draining = True
        log.info("draining: /health answers 503 for %.1f s, then the server stops", self.delay)
        timer = threading.Timer(self.delay, super().handle_exit, args=(sig, frame))
        timer.daemon = True  # a second signal ends the server sooner; its process then need not wait for this
        timer.start()


@dataclasses.dataclass(frozen=True)
class ServePlan:
    """What a server process needs, checked and resolved once (artifacts exported, names chosen); picklable, so
    that `--processes N` hands it to each server process."""

    names: list[str]
    artifacts: list[Path]
    options: RuntimeOptions
    settings: Settings
    host: str
    port: int
    access_log: bool
    drain_seconds: float
    shutdown_delay: float
    head_timeout: float = 10.0
    limit_concurrency: int | None = 1000


def serve_plan(args: argparse.Namespace) -> ServePlan:
    """Export what needs exporting and check every option; raises the one error `serve` reports."""
    models: list[str | None] = list(args.models) or [None]
    artifacts = [artifact_for(m) for m in models]
    names = served_names(models, artifacts, args.served_model_name)
    options = RuntimeOptions(
        backend=args.backend,
        precision=args.precision,
        max_batch_tokens=args.max_batch_tokens,
        max_queue=args.max_queue or DEFAULT_MAX_QUEUE,
        max_input_chars=args.max_input_chars,
        engine_timeout=args.engine_timeout,
        chunked_processing=getattr(args, "enable_chunked_processing", False),
        max_embed_len=getattr(args, "max_embed_len", None),
        max_images=args.max_images,
        image_dir=args.image_dir,
        image_domains=tuple(args.image_domain or ()),
        devices=getattr(args, "devices", None),
        workers=getattr(args, "workers", None),
    )
    settings = Settings(
        api_key=api_key(args),
        min_priority=args.min_priority,
        allowed_hosts=args.allowed_host,
        auto_truncate=getattr(args, "auto_truncate", False),
        trust_request_chat_template=getattr(args, "trust_request_chat_template", False),
    )
    if args.max_client_batch_size:
        settings.max_client_batch_size = args.max_client_batch_size
    try:
        check_settings(settings)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return ServePlan(
        names=names,
        artifacts=artifacts,
        options=options,
        settings=settings,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        drain_seconds=args.drain_seconds,
        shutdown_delay=args.shutdown_delay,
        head_timeout=getattr(args, "head_timeout", 10.0),
        limit_concurrency=getattr(args, "limit_concurrency", 1000),
    )


def run_server(plan: ServePlan, registry: Registry, sockets: list[socket.socket] | None = None) -> None:
    """Serve `registry` under uvicorn until SIGTERM/SIGINT (drained); on `sockets` (bound by the parent of
    several server processes, whose metrics are then aggregated across them) or on the plan's host and port."""
    app = create_app(lambda: registry, plan.settings, Metrics(multiprocess=sockets is not None))
    # No per-request access log unless asked for: at a few hundred requests/s it costs CPU the engine needs
    # (the request id, status and timings are in each response's headers and in /metrics).
    config = uvicorn.Config(
        app,
        host=plan.host,
        port=plan.port,
        log_level="info",
        access_log=plan.access_log,
        timeout_graceful_shutdown=int(plan.drain_seconds),
        timeout_keep_alive=5,
        http=limited(default_http(), MAX_HEADER_BYTES, plan.head_timeout),
        h11_max_incomplete_event_size=4 * MAX_HEADER_BYTES,  # a backstop; the 431 comes from limits.py first
        limit_concurrency=plan.limit_concurrency,
    )
    Draining(config, registry, plan.shutdown_delay).run(sockets)


def serve(args: argparse.Namespace) -> int:
    """One server process (`--processes N`: server/processes.py, which builds on this module)."""
    check_port_free(args.host, args.port)
    plan = serve_plan(args)
    run_server(plan, load_registry(plan.names, plan.artifacts, plan.options))
    return 0

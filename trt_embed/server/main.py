"""`trt-embed serve`: export what needs exporting (in a subprocess), load the runtimes, then run the app under
uvicorn. Everything that can fail at start-up fails before uvicorn starts, as one `error:` line."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from trt_embed.defaults import DEFAULT_MODEL_NAME, artifact_for, source_name
from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

log = logging.getLogger("trt_embed.server")
DEFAULT_MAX_QUEUE = 8192


def served_names(models: list[str | None], artifacts: list[Path], given: list[str] | None) -> list[str]:
    """One name per model: --served-model-name, else the model it was exported from (the README's name)."""
    if given:
        if len(given) != len(artifacts):
            raise InvalidRequest(
                f"{len(given)} --served-model-name for {len(artifacts)} models; give one name per model"
            )
        return given
    names = []
    for model, artifact in zip(models, artifacts, strict=True):
        source = str(Manifest.read(artifact).source.get("model", ""))
        names.append(DEFAULT_MODEL_NAME if model is None else source_name(source) or artifact.name)
    return names


def check_port_free(host: str, port: int) -> None:
    """Fail before loading anything if the address is taken (uvicorn would log it after the load)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InvalidRequest(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None


def load_registry(names: list[str], artifacts: list[Path], options: dict[str, object]) -> Registry:
    """Load every runtime; on a failure close the ones already loaded and re-raise."""
    registry = Registry()
    try:
        for name, artifact in zip(names, artifacts, strict=True):
            runtime = Runtime.load(artifact, **options)
            aliases = [artifact.name] if artifact.name != name else []
            registry.add(runtime, name, aliases)
            log.info("serving %s from %s on %s (%s)", name, artifact, runtime.backend, runtime.backend_reason)
    except BaseException:
        registry.close()
        raise
    return registry


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    check_port_free(args.host, args.port)
    models: list[str | None] = list(args.models) or [None]
    artifacts = [artifact_for(m) for m in models]
    names = served_names(models, artifacts, args.served_model_name)
    options: dict[str, object] = {
        "backend": args.backend,
        "precision": args.precision,
        "max_batch_tokens": args.max_batch_tokens,
        "max_queue": args.max_queue or DEFAULT_MAX_QUEUE,
    }
    registry = load_registry(names, artifacts, options)
    settings = Settings(api_key=args.api_key or os.environ.get("TRT_EMBED_API_KEY") or None)
    if args.max_client_batch_size:
        settings.max_client_batch_size = args.max_client_batch_size
    app = create_app(lambda: registry, settings)
    # No per-request access log unless asked for: at a few hundred requests/s it costs CPU the engine needs
    # (the request id, status and timings are in each response's headers and in /metrics).
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=args.access_log,
        timeout_graceful_shutdown=30,
    )
    return 0

"""`trt-embed serve`: export what needs exporting (in a subprocess), then run the app under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from trt_embed.defaults import DEFAULT_MODEL_NAME, artifact_for
from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

log = logging.getLogger("trt_embed.server")
DEFAULT_MAX_QUEUE = 8192


def served_names(models: list[str | None], artifacts: list[Path], given: list[str] | None) -> list[str]:
    if given:
        if len(given) != len(artifacts):
            raise InvalidRequest(
                f"{len(given)} --served-model-name for {len(artifacts)} models; give one name per model"
            )
        return given
    names = []
    for model, artifact in zip(models, artifacts, strict=True):
        if model is None:
            names.append(DEFAULT_MODEL_NAME)
            continue
        source = str(Manifest.read(artifact).source.get("model", ""))
        is_hub_id = source.count("/") == 1 and not Path(source).exists()
        names.append(source if is_hub_id else Path(model).expanduser().resolve().name)
    return names


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    models: list[str | None] = list(args.models) or [None]
    artifacts = [artifact_for(m) for m in models]
    names = served_names(models, artifacts, args.served_model_name)
    options = {
        "backend": args.backend,
        "precision": args.precision,
        "max_batch_tokens": args.max_batch_tokens,
        "max_queue": args.max_queue or DEFAULT_MAX_QUEUE,
    }

    def load() -> Registry:
        registry = Registry()
        for name, artifact in zip(names, artifacts, strict=True):
            runtime = Runtime.load(artifact, **options)
            registry.add(runtime, name)
            log.info("serving %s from %s on %s (%s)", name, artifact, runtime.backend, runtime.backend_reason)
        return registry

    settings = Settings(api_key=args.api_key or os.environ.get("TRT_EMBED_API_KEY") or None)
    if args.max_client_batch_size:
        settings.max_client_batch_size = args.max_client_batch_size
    app = create_app(load, settings)
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

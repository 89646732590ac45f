"""A real uvicorn server on loopback serving all-MiniLM-L6-v2 and a tiny Matryoshka model."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

API_KEY = "test-key-123"


@pytest.fixture(scope="session")
def prompt_artifact(tiny_bert_artifact: Callable[..., Path]) -> Path:
    """Tiny BERT with Matryoshka dims and query/document prompts."""
    prompts = {"prompts": {"query": "search query: ", "document": "search document: "}, "default_prompt_name": None}
    return tiny_bert_artifact({"matryoshka_dimensions": [16, 32, 64]}, prompts)


class LiveServer:
    def __init__(self, app: object) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="session")
def live(minilm_artifact: Path, prompt_artifact: Path) -> Iterator[LiveServer]:
    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(minilm_artifact, max_queue=4096), "minilm")
        registry.add(Runtime.load(prompt_artifact, max_queue=4096), "tiny")
        return registry

    app = create_app(load, Settings(api_key=API_KEY, max_client_batch_size=64, max_body_bytes=200_000))
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def reference(minilm_artifact: Path, prompt_artifact: Path) -> Iterator[dict[str, Runtime]]:
    """Runtimes outside the server, to compare answers against."""
    runtimes = {"minilm": Runtime.load(minilm_artifact), "tiny": Runtime.load(prompt_artifact)}
    yield runtimes
    for runtime in runtimes.values():
        runtime.close()


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client

"""The README's main command: `trt-embed serve` with no model serves all-MiniLM-L6-v2 and answers curl; a model
directory is exported into the cache on first use, once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from trt_embed.defaults import artifact_for
from trt_embed.manifest import Manifest


def test_serve_default_model(minilm_cache: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TRT_EMBED_CACHE": str(minilm_cache)}
    process = subprocess.Popen(
        [sys.executable, "-m", "trt_embed.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        # the README's curl example
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings",
            json={"model": "all-MiniLM-L6-v2", "input": ["hello world", "good morning"]},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) == 2 and len(body["data"][0]["embedding"]) == 384
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # uvicorn drains, runs the lifespan shutdown, then re-raises SIGTERM to the default handler
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output


def test_a_model_directory_is_exported_into_the_cache_once(
    tiny_model: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRT_EMBED_CACHE", str(tmp_path))
    model_dir = tiny_model("BertModel")
    artifact = artifact_for(str(model_dir))
    assert artifact.parent == tmp_path and artifact.name.startswith(f"{model_dir.name}-")
    assert Manifest.read(artifact).source["model"] == str(model_dir)
    written = (artifact / "trt_embed.json").stat().st_mtime_ns
    assert artifact_for(str(model_dir)) == artifact and (artifact / "trt_embed.json").stat().st_mtime_ns == written
    assert artifact_for(str(artifact)) == artifact, "an artifact is used as it is"

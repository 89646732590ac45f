"""The app's gate: header-safe request ids, security headers on every response, allowed hosts, API keys."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer
from starlette.testclient import TestClient

from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.ids import MAX_REQUEST_ID
from trt_embed.server.registry import Registry, Settings

KEY = "gate-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _loader(artifact: Path) -> Callable[[], Registry]:
    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(artifact), "tiny")
        return registry

    return load


@pytest.fixture(scope="module")
def server(prompt_artifact: Path) -> Iterator[LiveServer]:
    """A real uvicorn server (the HTTP layer is where unsafe headers dropped connections) on the tiny model."""
    with LiveServer(create_app(_loader(prompt_artifact), Settings(api_key=KEY))) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        yield client


def _is_fresh(request_id: str, given: str) -> bool:
    return request_id != given and 0 < len(request_id) <= MAX_REQUEST_ID and request_id.isascii()


@pytest.mark.parametrize(
    "given", ["a\nb", "a\r\nb", "\x00", "\x7f", "x" * 1000], ids=["lf", "crlf", "nul", "del", "long"]
)
def test_an_unsafe_body_request_id_is_not_echoed(http: httpx.Client, given: str) -> None:
    response = http.post("/v1/embeddings", json={"input": "x", "request_id": given})
    assert response.status_code == 200, response.text
    assert _is_fresh(response.headers["x-request-id"], given)


def test_a_unicode_body_request_id_is_not_a_500(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"input": "x", "request_id": "\u4e2d"})
    assert response.status_code == 200, response.text
    assert _is_fresh(response.headers["x-request-id"], "\u4e2d")


def test_a_safe_request_id_is_echoed(http: httpx.Client) -> None:
    assert (
        http.post("/v1/embeddings", json={"input": "x"}, headers={"x-request-id": "r-1"}).headers["x-request-id"]
        == "r-1"
    )
    body = http.post("/v1/embeddings", json={"input": "x", "request_id": "body-1"})
    assert body.headers["x-request-id"] == "body-1" and body.json()["id"] == "body-1"


@pytest.mark.parametrize(
    "given",
    [b"x" * 100_000, "\u4e2d".encode(), b"a\tb", b"a b", b"\xff"],
    ids=["100k", "unicode", "tab", "space", "latin-1"],
)
def test_an_unsafe_header_request_id_is_replaced(http: httpx.Client, given: bytes) -> None:
    response = http.get("/health", headers={"x-request-id": given})
    assert response.status_code == 200
    assert _is_fresh(response.headers["x-request-id"], given.decode("latin-1"))


def test_nosniff_on_every_response(server: LiveServer, http: httpx.Client) -> None:
    responses = [
        http.post("/v1/embeddings", json={"input": "x"}),
        http.post("/v1/embeddings", json={"input": []}),
        http.post("/v1/embeddings", content=b"{", headers={"content-type": "application/json"}),
        http.post("/v1/embeddings", content=b"x", headers={"content-type": "text/plain"}),
        http.get("/nothing-here"),
        http.get("/v1/embeddings"),
        http.get("/health"),
        http.get("/metrics"),
        http.get("/openapi.json"),
        httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"}),
    ]
    assert {r.status_code for r in responses} >= {200, 400, 401, 404, 405, 415}
    for response in responses:
        assert response.headers.get("x-content-type-options") == "nosniff", (response.status_code, response.url)
        assert len(response.headers.get_list("x-request-id")) == 1


def test_405_says_which_methods_are_allowed(http: httpx.Client) -> None:
    response = http.get("/v1/embeddings")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "MethodNotAllowed"
    assert set(http.post("/health").headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_401_carries_a_bearer_challenge(server: LiveServer) -> None:
    missing = httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("key", ["", "  "])
def test_an_empty_api_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="API key is empty"):
        create_app(Registry, Settings(api_key=key))


def test_allowed_hosts(prompt_artifact: Path) -> None:
    settings = Settings(api_key=KEY, allowed_hosts=["api.example.com", "*.internal"])
    with TestClient(create_app(_loader(prompt_artifact), settings), base_url="http://api.example.com") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "node-1.internal:8080"}).status_code == 200
        for host in ("evil.example.com", "example.com", "localhost"):
            refused = client.get("/health", headers={"host": host})
            assert refused.status_code == 400, host
            assert refused.headers["x-content-type-options"] == "nosniff"
        # the host check comes first: a wrong host is refused before the API key is looked at
        assert client.post("/v1/embeddings", json={"input": "x"}, headers={"host": "evil.test"}).status_code == 400
        ok = client.post("/v1/embeddings", json={"input": "x"}, headers=AUTH)
        assert ok.status_code == 200 and len(ok.json()["data"]) == 1


@pytest.mark.parametrize("pattern", ["", "api.*.com", "*example.com"])
def test_a_malformed_allowed_host_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="allowed host"):
        create_app(Registry, Settings(allowed_hosts=[pattern]))


def _request_count(http: httpx.Client, status: int) -> float:
    """trt_embed_requests_total for /v1/embeddings and `status` (other tests share the server: compare deltas)."""
    pattern = f'trt_embed_requests_total{{route="/v1/embeddings",status="{status}"}} '
    line = next((x for x in http.get("/metrics").text.splitlines() if x.startswith(pattern)), None)
    return 0.0 if line is None else float(line.removeprefix(pattern))


def test_a_client_that_leaves_mid_body_is_not_a_server_error(
    server: LiveServer, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"input": "' + b"x" * 5000 + b'"}'
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = {status: _request_count(http, status) for status in (499, 500)}
    caplog.clear()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + body[: len(body) // 2])
            time.sleep(0.2)  # the handler is reading the body when the client goes
    time.sleep(0.5)
    assert _request_count(http, 499) == before[499] + 3, "recorded as a client that left"
    assert _request_count(http, 500) == before[500], "not as a server error"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a disconnect is not an error"
    assert http.post("/v1/embeddings", json={"input": "x"}).status_code == 200

"""Request-head limits that hold with whichever parser uvicorn runs (httptools by default, h11): a head larger
than `max_head_bytes` is answered 431 and the connection closed; a head that does not complete within
`head_timeout` seconds (slowloris, idle connections) is answered 408 (or closed if nothing was sent).
uvicorn's own `h11_max_incomplete_event_size` covers only h11, so the check is done here on the raw bytes,
before either parser sees them."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_END = b"\r\n\r\n"


def raw_error(status: int, reason: str, message: str, kind: str) -> bytes:
    """A complete HTTP/1.1 error response in the server's JSON error shape, closing the connection."""
    body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": str(status)}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadLimits:
    """Mixin for a uvicorn HTTP protocol class; `limited()` builds the concrete classes."""

    max_head_bytes = 16 * 1024
    head_timeout = 10.0
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._head_seen = 0
        self._tail = b""
        self._awaiting_head = True
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_head and self._head_size(data) > self.max_head_bytes:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers exceed {self.max_head_bytes} bytes; send smaller headers",
                "RequestHeaderFieldsTooLargeError",
            )
            return
        super().data_received(data)  # type: ignore[misc]

    def _head_size(self, data: bytes) -> int:
        """Bytes of the current head so far; marks the head done when its blank line arrives."""
        buffer = self._tail + data
        end = buffer.find(HEAD_END)
        if end < 0:
            self._head_seen += len(data)
            self._tail = buffer[-3:]
            return self._head_seen
        size = self._head_seen - len(self._tail) + end + len(HEAD_END)
        self._awaiting_head, self._head_seen, self._tail = False, 0, b""
        self._cancel_head_timer()
        return size

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._awaiting_head, self._head_seen, self._tail = True, 0, b""
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        if self.head_timeout > 0:
            self._head_timer = asyncio.get_running_loop().call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self._refused or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined request is still being answered
        if self._head_seen == 0:
            self._refused = True
            self.transport.close()
            return
        self._refuse(
            408,
            "Request Timeout",
            f"the request head did not arrive within {self.head_timeout:g} s",
            "RequestTimeoutError",
        )

    def _refuse(self, status: int, reason: str, message: str, kind: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        self.transport.write(raw_error(status, reason, message, kind))
        self.transport.close()


def limited(http: str, max_head_bytes: int, head_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's protocol class for `http` ("httptools" or "h11") with the head limits; pass as Config(http=...)."""
    base: type[asyncio.Protocol] = HttpToolsProtocol if http == "httptools" else H11Protocol
    attrs = {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout}
    return type(f"Limited{base.__name__}", (HeadLimits, base), attrs)


def default_http() -> str:
    """The parser uvicorn's "auto" picks: httptools when it is installed (the `[server]` extra), else h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"

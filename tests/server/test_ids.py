"""Request ids: a client's id is echoed only when it is header-safe; anything else gets a fresh one."""

from __future__ import annotations

import pytest

from trt_embed.server.ids import MAX_REQUEST_ID, header_request_id, safe_request_id


@pytest.mark.parametrize("value", ["abc-123", "req_1.2:3/4=5", "x" * MAX_REQUEST_ID, "!~"])
def test_safe_ids_are_kept(value: str) -> None:
    assert safe_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [None, "", "x" * (MAX_REQUEST_ID + 1), "x" * 100_000, "\u4e2d", "a\nb", "a\r\nb", "\x00", "\x7f", "a b", "é"],
)
def test_unsafe_ids_are_refused(value: str | None) -> None:
    assert safe_request_id(value) is None


def test_a_header_id_is_the_clients_or_fresh() -> None:
    assert header_request_id(b"abc-123") == "abc-123"
    for raw in (None, b"", "\u4e2d".encode(), b"a\tb", b"y" * 1000):
        fresh = header_request_id(raw)
        assert len(fresh) == 32 and fresh.isalnum(), fresh
    assert header_request_id(None) != header_request_id(None)

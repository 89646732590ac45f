"""Request ids that are safe to echo in a response header: a client's id is kept only if it is harmless."""

from __future__ import annotations

import uuid

MAX_REQUEST_ID = 128  # characters; longer ids are replaced, not cut, so a kept id is always the client's own
_VISIBLE_ASCII = frozenset(chr(c) for c in range(0x21, 0x7F))  # no space, no control character, nothing non-ASCII


def safe_request_id(value: str | None) -> str | None:
    """`value` if it can go into a header unchanged (1 to 128 visible ASCII characters), else None: the caller
    then makes its own id. Unicode, CR/LF, NUL, DEL, spaces and over-long ids are never echoed."""
    if value is None or not 0 < len(value) <= MAX_REQUEST_ID:
        return None
    return value if _VISIBLE_ASCII.issuperset(value) else None


def header_request_id(raw: bytes | None) -> str:
    """The id for a request from its raw `x-request-id` header: the client's if safe, else a fresh one."""
    given = None if raw is None else raw.decode("latin-1")
    return safe_request_id(given) or fresh_request_id()


def fresh_request_id() -> str:
    return uuid.uuid4().hex

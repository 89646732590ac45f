"""What a hostile or careless client sends is refused with the right 4xx, before any work: strict types, empty
inputs, priorities below the server's floor, clients that leave."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from trt_embed.server.registry import Settings, answered

BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"input": [True, False]}, 400, "integer token ids"),
    ({"input": [[1, 2], [True]]}, 400, "integer token ids"),
    ({"input": [1.5, 2]}, 400, "integer token ids"),
    ({"input": [2**64]}, 400, "integer token ids"),  # past 64 bits JSON parsers give a float
    ({"input": [2**63]}, 400, "outside the vocabulary"),
    ({"input": [2**63]}, 400, "check_embedding_ctx_length=False"),  # LangChain's default sends tiktoken ids
    ({"inputs": ["a text"]}, 400, "reads `input`"),  # TEI's field name
    ({"input": "x", "priority": False}, 400, "priority"),
    ({"input": "x", "priority": -1}, 400, "below this server's minimum of 0"),
    ({"input": "", "add_special_tokens": False}, 400, "has no tokens"),
    ({"input": ["ok", "\u200b"], "add_special_tokens": False}, 400, r"input[1] has no tokens"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[str(b[0])[:60] for b in BAD])
def test_bad_bodies_get_a_clear_4xx(http: httpx.Client, body: dict[str, Any], status: int, message: str) -> None:
    response = http.post("/v1/embeddings", json={"model": "tiny", **body})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    pooled = http.post("/pooling", json={"model": "tiny", **body})
    assert pooled.status_code == status, pooled.text


@pytest.mark.parametrize("side", ["text_1", "text_2"])
def test_score_names_its_empty_side(http: httpx.Client, side: str) -> None:
    body = {"text_1": "a query", "text_2": ["a document"], side: []}
    response = http.post("/score", json={"model": "tiny", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == side and error["message"].startswith(f"{side} is empty")


def test_settings_floor_for_priority() -> None:
    assert Settings().min_priority == 0


class Gone:
    """An ASGI request whose client disconnects as soon as the server listens for more."""

    def __init__(self) -> None:
        self.scope = {"type": "http"}

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.disconnect"}


def test_work_of_a_client_that_left_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    async def run() -> int:
        from trt_embed.server.errors import HTTPError

        try:
            await answered(Gone(), slow())  # type: ignore[arg-type]
        except HTTPError as exc:
            await asyncio.wait_for(cancelled.wait(), 5)
            return exc.status
        return 200

    assert asyncio.run(run()) == 499


def test_tokenize_refuses_a_prompt_past_the_character_limit(http: httpx.Client) -> None:
    response = http.post("/tokenize", json={"model": "tiny", "prompt": "word " * 21_000})
    assert response.status_code == 413, response.text
    assert "characters; the limit is" in response.json()["error"]["message"]
    assert http.get("/health").status_code == 200

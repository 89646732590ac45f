"""Vision-language embedders through a live server, one per family: `/v1/embeddings` and `/pooling` with chat
`messages` holding image parts, the official cohere client with images and mixed `inputs`, and the openai client
with texts; each answer equals `Runtime` on the same decoded images."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import API_KEY, LiveServer
from vlm_reference import REFERENCES

from trt_embed.runtime import ChatOptions, Dense, EmbedRequest, Interleaved, Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

Image = pytest.importorskip("PIL.Image")
data = pytest.importorskip("skimage.data")


def png(image: Any) -> tuple[str, Any]:
    """A data URI of `image` and the image as the server decodes it."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), Image.open(buffer).convert("RGB")


@pytest.fixture(scope="module", params=sorted(REFERENCES))
def served(
    request: pytest.FixtureRequest, tiny_artifact: Callable[[str], Path]
) -> Iterator[tuple[LiveServer, Runtime]]:
    artifact = tiny_artifact(request.param)

    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(artifact, workers=1, max_images=4), "vlm")
        return registry

    app = create_app(load, Settings(api_key=API_KEY, max_client_batch_size=64, max_body_bytes=4_000_000))
    with LiveServer(app) as live, Runtime.load(artifact, workers=1) as runtime:
        yield live, runtime


def test_messages_with_images_on_embeddings_and_pooling(served: tuple[LiveServer, Runtime]) -> None:
    live, runtime = served
    url, _ = png(Image.fromarray(data.coffee()).resize((60, 40)))
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "a cup"}],
        }
    ]
    expected = runtime.run(EmbedRequest(messages=messages, add_special_tokens=False))
    assert isinstance(expected.output, Dense)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=60) as http:
        embedded = http.post("/v1/embeddings", json={"model": "vlm", "messages": messages})
        assert embedded.status_code == 200, embedded.text
        np.testing.assert_allclose(embedded.json()["data"][0]["embedding"], expected.output.vectors[0], atol=1e-5)
        assert embedded.json()["usage"]["prompt_tokens"] == expected.num_tokens
        pooled = http.post("/pooling", json={"model": "vlm", "messages": messages})
        assert pooled.status_code == 200, pooled.text
        np.testing.assert_allclose(pooled.json()["data"][0]["data"], expected.output.vectors[0], atol=1e-5)
        too_many = http.post("/v1/embeddings", json={"model": "vlm", "messages": messages * 5})
        assert too_many.status_code == 400 and "images" in too_many.text
        broken = [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}
        ]
        bad = http.post("/v1/embeddings", json={"model": "vlm", "messages": broken})
        assert bad.status_code == 400, bad.text
    assert ChatOptions().add_generation_prompt is False  # the server renders messages as the request says


def test_cohere_client_images_and_mixed_inputs(served: tuple[LiveServer, Runtime]) -> None:
    cohere = pytest.importorskip("cohere")
    live, runtime = served
    client = cohere.ClientV2(api_key=API_KEY, base_url=live.url)
    first_url, first = png(Image.fromarray(data.astronaut()).resize((48, 48)))
    second_url, second = png(Image.fromarray(data.chelsea()).resize((30, 64)))
    response = client.embed(model="vlm", images=[first_url, second_url], input_type="image", embedding_types=["float"])
    np.testing.assert_allclose(np.array(response.embeddings.float_), runtime.embed(images=[first, second]), atol=1e-5)
    mixed = client.embed(
        model="vlm",
        inputs=[
            {"content": [{"type": "text", "text": "a cat"}]},
            {"content": [{"type": "image_url", "image_url": {"url": second_url}}]},
            {"content": [{"type": "image_url", "image_url": {"url": first_url}}, {"type": "text", "text": "a face"}]},
        ],
        input_type="search_document",
        embedding_types=["float"],
    )
    want = runtime.embed(["a cat", second, Interleaved((first, "a face"))])
    np.testing.assert_allclose(np.array(mixed.embeddings.float_), want, atol=1e-5)


def test_openai_client_texts(served: tuple[LiveServer, Runtime]) -> None:
    openai = pytest.importorskip("openai")
    live, runtime = served
    client = openai.OpenAI(api_key=API_KEY, base_url=f"{live.url}/v1")
    response = client.embeddings.create(model="vlm", input=["a query", "another query"])
    got = np.array([d.embedding for d in response.data])
    np.testing.assert_allclose(got, runtime.embed(["a query", "another query"]), atol=1e-5)

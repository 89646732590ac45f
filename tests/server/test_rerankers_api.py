"""vLLM's /score, /rerank (/v1, /v2) and /classify served by cross-encoder artifacts (tiny random-weight BERT
sequence classifiers, 1 and 3 labels) over real HTTP: answers vs sentence-transformers' CrossEncoder and
transformers' softmax; a task the model lacks and bad documents are 400s naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.exporter.test_cross_encoder import _save
from tests.runtime.test_pairs import DOCS, QUERIES
from tests.server.conftest import API_KEY, LiveServer
from trt_embed.exporter.export import export_model
from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    made = {}
    for name, labels in (("ce", 1), ("clf", 3)):
        root = tmp_path_factory.mktemp(f"server_{name}")
        export_model(str(_save("bert", labels, root / "model")), root / "artifact")
        made[name] = (root / "model", root / "artifact")
    return made


@pytest.fixture(scope="module")
def client(models: dict[str, tuple[Path, Path]], prompt_artifact: Path) -> Iterator[httpx.Client]:
    def load() -> Registry:
        registry = Registry()
        for name, (_, artifact) in models.items():
            registry.add(Runtime.load(artifact, workers=1), name)
        registry.add(Runtime.load(prompt_artifact, workers=1), "tiny")
        return registry

    app = create_app(load, Settings(api_key=API_KEY, max_client_batch_size=64))
    with (
        LiveServer(app) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as http,
    ):
        yield http


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_rerank_runs_the_cross_encoder(client: httpx.Client, models: dict[str, tuple[Path, Path]], path: str) -> None:
    from sentence_transformers import CrossEncoder

    expected = CrossEncoder(str(models["ce"][0]), device="cpu").rank(QUERIES[0], DOCS, top_k=3)
    response = client.post(path, json={"model": "ce", "query": QUERIES[0], "documents": DOCS, "top_n": 3})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [int(e["corpus_id"]) for e in expected]
    np.testing.assert_allclose([r["relevance_score"] for r in results], [e["score"] for e in expected], atol=1e-5)
    assert results[0]["document"]["text"] == DOCS[results[0]["index"]]


def test_score_runs_the_cross_encoder(client: httpx.Client, models: dict[str, tuple[Path, Path]]) -> None:
    from sentence_transformers import CrossEncoder

    expected = CrossEncoder(str(models["ce"][0]), device="cpu").predict([(QUERIES[1], d) for d in DOCS])
    response = client.post("/score", json={"model": "ce", "text_1": QUERIES[1], "text_2": DOCS})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose([d["score"] for d in response.json()["data"]], expected, atol=1e-5)


def test_classify_in_vllm_shape(client: httpx.Client, models: dict[str, tuple[Path, Path]]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = models["clf"][0]
    torch_model = AutoModelForSequenceClassification.from_pretrained(model).eval()
    with torch.no_grad():
        encoded = AutoTokenizer.from_pretrained(model)(DOCS, padding=True, return_tensors="pt")
        probs = torch.softmax(torch_model(**encoded).logits, dim=-1).numpy()
    response = client.post("/classify", json={"model": "clf", "input": DOCS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["id"].startswith("classify")
    np.testing.assert_allclose([d["probs"] for d in body["data"]], probs, atol=1e-5)
    assert [d["label"] for d in body["data"]] == [torch_model.config.id2label[int(i)] for i in probs.argmax(1)]
    assert all(d["num_classes"] == 3 for d in body["data"]) and [d["index"] for d in body["data"]] == [0, 1, 2]
    assert body["usage"]["prompt_tokens"] == int(encoded["attention_mask"].sum())


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/classify", {"model": "tiny", "input": ["a text"]}, "task"),
        ("/v1/embeddings", {"model": "ce", "input": ["a text"]}, "task"),
        ("/rerank", {"model": "ce", "query": "q", "documents": []}, "documents"),
        ("/classify", {"model": "clf", "input": []}, "input"),
    ],
)
def test_a_task_the_model_lacks_is_a_400(client: httpx.Client, path: str, body: dict[str, object], field: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert field in response.text

"""Sparse and multi-vector models over HTTP: /embed_sparse (TEI's shape), /pooling's tasks per output kind,
/score and /rerank by model kind, and dense-only routes refusing a SPLADE model."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from trt_embed.runtime import EmbedRequest, Runtime, Sparse
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

TEXTS = ["hello world", "the cat sat on the green paper", "a river at night"]


@pytest.fixture(scope="module")
def runtimes(tiny_artifact: Callable[[str], Path]) -> Iterator[dict[str, Runtime]]:
    loaded = {
        "splade": Runtime.load(tiny_artifact("BertForMaskedLM")),
        "m3": Runtime.load(tiny_artifact("BgeM3EmbeddingModel")),
    }
    yield loaded
    for runtime in loaded.values():
        runtime.close()


@pytest.fixture(scope="module")
def client(tiny_artifact: Callable[[str], Path]) -> Iterator[TestClient]:
    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(tiny_artifact("BertForMaskedLM")), "splade")
        registry.add(Runtime.load(tiny_artifact("BgeM3EmbeddingModel")), "m3")
        return registry

    with TestClient(create_app(load, Settings())) as test_client:
        yield test_client


@pytest.mark.parametrize("model", ["splade", "m3"])
def test_embed_sparse_has_teis_shape(client: TestClient, runtimes: dict[str, Runtime], model: str) -> None:
    response = client.post("/embed_sparse", json={"inputs": TEXTS, "model": model})
    assert response.status_code == 200, response.text
    want = runtimes[model].run(EmbedRequest(inputs=TEXTS, task="sparse")).output
    assert isinstance(want, Sparse)
    body = response.json()
    assert len(body) == len(TEXTS)
    for row, ids, weights in zip(body, want.ids, want.weights, strict=True):
        assert [item["index"] for item in row] == ids.tolist()
        np.testing.assert_allclose([item["value"] for item in row], weights, rtol=1e-6)
    one = client.post("/embed_sparse", json={"inputs": TEXTS[1], "model": model, "top_k": 3}).json()
    assert [item["index"] for item in one[0]] == want.ids[1][:3].tolist()


def test_pooling_tasks_per_kind(client: TestClient, runtimes: dict[str, Runtime]) -> None:
    sparse = client.post("/pooling", json={"model": "m3", "input": TEXTS, "task": "sparse"}).json()
    assert set(sparse["data"][0]["data"]) == {"indices", "values"}
    colbert = client.post("/pooling", json={"model": "m3", "input": TEXTS, "task": "token_embed"}).json()
    want = runtimes["m3"].encode(TEXTS, pooling_task="token_embed")
    for row, matrix in zip(colbert["data"], want, strict=True):
        np.testing.assert_allclose(np.array(row["data"]), matrix, rtol=1e-5, atol=1e-6)
    packed = client.post(
        "/pooling", json={"model": "m3", "input": TEXTS, "task": "token_embed", "encoding_format": "base64"}
    ).json()
    for row, matrix in zip(packed["data"], want, strict=True):  # multi-vector outputs as base64, row-major
        got = np.frombuffer(base64.b64decode(row["data"]), dtype="<f4").reshape(matrix.shape)
        np.testing.assert_allclose(got, matrix, rtol=1e-6)
    weights = client.post("/pooling", json={"model": "m3", "input": TEXTS, "task": "token_classify"}).json()
    assert np.array(weights["data"][0]["data"]).shape[1] == 1
    bad = client.post("/pooling", json={"model": "splade", "input": TEXTS, "task": "token_classify"})
    message = bad.json()["error"]["message"]
    assert bad.status_code == 400 and message == "Unsupported task: 'token_classify' Supported tasks: " + str(
        ("embed", "sparse", "token_embed")
    )


def test_dense_routes_refuse_a_sparse_model(client: TestClient) -> None:
    for path, body in (
        ("/v1/embeddings", {"model": "splade", "input": TEXTS}),
        ("/v2/embed", {"model": "splade", "texts": TEXTS, "input_type": "search_query", "embedding_types": ["float"]}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 400, response.text
        assert "/embed_sparse" in response.json()["error"]["message"]
    assert client.post("/v1/embeddings", json={"model": "m3", "input": TEXTS}).status_code == 200


def test_score_and_rerank_by_kind(client: TestClient, runtimes: dict[str, Runtime]) -> None:
    vectors = runtimes["splade"].encode(TEXTS)
    assert isinstance(vectors, np.ndarray)
    scores = client.post("/score", json={"model": "splade", "text_1": TEXTS[0], "text_2": TEXTS[1:]}).json()
    np.testing.assert_allclose([d["score"] for d in scores["data"]], vectors[1:] @ vectors[0], rtol=1e-5)
    ranked = client.post("/rerank", json={"model": "splade", "query": TEXTS[0], "documents": TEXTS[1:]}).json()
    order = np.argsort(-(vectors[1:] @ vectors[0]))
    assert [r["index"] for r in ranked["results"]] == order.tolist()


def test_bge_m3_weighted_score_over_http(client: TestClient, runtimes: dict[str, Runtime]) -> None:
    weights = (0.4, 0.2, 0.4)
    from trt_embed.runtime import ScoreRequest

    want = runtimes["m3"].run_score(ScoreRequest(first=TEXTS[0], second=TEXTS[1:], weights=weights)).scores
    body = {"model": "m3", "text_1": TEXTS[0], "text_2": TEXTS[1:], "weights": list(weights)}
    got = client.post("/score", json=body).json()
    np.testing.assert_allclose([d["score"] for d in got["data"]], want, rtol=1e-5)
    bad = client.post("/score", json={**body, "weights": [1, -1, 1]})
    assert bad.status_code == 400 and "non-negative" in bad.json()["error"]["message"]
    dense_model = client.post(
        "/rerank", json={"model": "splade", "query": "a", "documents": ["b"], "weights": [1, 1, 1]}
    )
    assert dense_model.status_code == 400 and "bge-m3" in dense_model.json()["error"]["message"]


def test_bge_m3_dense_sparse_and_colbert_in_one_http_request(client: TestClient, runtimes: dict[str, Runtime]) -> None:
    """`task` as a list (or `also`): every output from one engine call, the first in `data` as vLLM clients read
    it, the others under `also` by task name; compared with the runtime's outputs of separate requests."""
    rt = runtimes["m3"]
    dense = rt.encode(TEXTS)
    sparse = rt.run(EmbedRequest(inputs=TEXTS, task="sparse", return_tokens=True)).output
    colbert = rt.encode(TEXTS, pooling_task="token_embed")
    assert isinstance(sparse, Sparse) and sparse.tokens is not None
    body = {"model": "m3", "input": TEXTS, "task": ["embed", "sparse", "token_embed"], "return_tokens": True}
    response = client.post("/pooling", json=body)
    assert response.status_code == 200, response.text
    assert float(response.headers["x-inference-time"]) >= 0
    items = response.json()["data"]
    for n, item in enumerate(items):
        np.testing.assert_allclose(item["data"], dense[n], rtol=1e-5, atol=1e-6)
        lexical = item["also"]["sparse"]
        assert lexical["indices"] == sparse.ids[n].tolist() and lexical["tokens"] == sparse.tokens[n]
        np.testing.assert_allclose(lexical["values"], sparse.weights[n], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array(item["also"]["token_embed"]), colbert[n], rtol=1e-5, atol=1e-6)
    same = client.post("/pooling", json={**body, "task": "embed", "also": ["sparse", "token_embed"]}).json()
    assert same["data"] == items and same["usage"] == response.json()["usage"]
    packed = client.post("/pooling", json={**body, "encoding_format": "base64"}).json()["data"]
    for n, item in enumerate(packed):  # base64: dense and ColBERT packed, sparse still indices and values
        np.testing.assert_allclose(np.frombuffer(base64.b64decode(item["data"]), "<f4"), dense[n], rtol=1e-5)
        matrix = np.frombuffer(base64.b64decode(item["also"]["token_embed"]), "<f4").reshape(colbert[n].shape)
        np.testing.assert_allclose(matrix, colbert[n], rtol=1e-5, atol=1e-6)
        assert item["also"]["sparse"]["indices"] == sparse.ids[n].tolist()
    plain = client.post("/pooling", json={"model": "m3", "input": TEXTS}).json()["data"][0]
    assert "also" not in plain  # one task: vLLM's shape exactly


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"task": []}, "empty list"),
        ({"task": ["embed", "token_classify", "classify"]}, "Unsupported task: 'classify'"),
        ({"model": "splade", "task": ["sparse", "token_classify"]}, "Unsupported task: 'token_classify'"),
        ({"encoding_format": "bytes"}, "JSON"),
        ({"encoding_format": "float", "task": 7}, "task"),
    ],
)
def test_several_tasks_refused_clearly(client: TestClient, change: dict[str, object], words: str) -> None:
    body = {"model": "m3", "input": TEXTS, "task": ["embed", "sparse"], **change}
    response = client.post("/pooling", json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]

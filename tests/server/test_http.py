"""Raw HTTP: the other routes, every error status, concurrency."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import API_KEY, LiveServer

from trt_embed.errors import InvalidRequest, Overloaded
from trt_embed.runtime import Runtime

TEXTS = ["The cat sat on the mat.", "Quantum computers use qubits.", "how do I reset my password"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_pooling_embed_and_token_embed(http: httpx.Client, reference: dict[str, Runtime]) -> None:
    runtime = reference["minilm"]
    body = http.post("/pooling", json={"model": "minilm", "input": TEXTS}).json()
    np.testing.assert_allclose([d["data"] for d in body["data"]], runtime.embed(TEXTS), atol=1e-6)
    assert body["data"][0]["object"] == "pooling"
    body = http.post("/pooling", json={"model": "minilm", "input": TEXTS[:2], "task": "token_embed"}).json()
    expected = runtime.encode(TEXTS[:2], pooling_task="token_embed")
    for got, want in zip(body["data"], expected, strict=True):
        np.testing.assert_allclose(np.array(got["data"]), want, atol=1e-5)
    b64 = http.post(
        "/pooling",
        json={
            "model": "minilm",
            "input": TEXTS[0],
            "encoding_format": "base64",
            "embed_dtype": "float16",
            "endianness": "big",
        },
    ).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["data"]), dtype=">f2")
    np.testing.assert_allclose(decoded, runtime.embed(TEXTS[:1])[0], atol=1e-3)


def test_score_and_rerank(http: httpx.Client, reference: dict[str, Runtime]) -> None:
    e = reference["minilm"].embed(TEXTS)
    one_to_many = http.post("/score", json={"model": "minilm", "text_1": TEXTS[0], "text_2": TEXTS}).json()
    np.testing.assert_allclose([d["score"] for d in one_to_many["data"]], e @ e[0], atol=1e-5)
    pairwise = http.post("/v1/score", json={"text_1": TEXTS, "text_2": TEXTS[::-1]}).json()
    np.testing.assert_allclose([d["score"] for d in pairwise["data"]], (e * e[::-1]).sum(1), atol=1e-5)
    error = error_of(http.post("/score", json={"text_1": TEXTS[:2], "text_2": TEXTS}), 400)
    assert "give one text_1" in error["message"]

    ranked = http.post("/rerank", json={"query": TEXTS[2], "documents": TEXTS, "top_n": 2}).json()
    scores = e @ e[2]
    assert [r["index"] for r in ranked["results"]] == list(np.argsort(-scores)[:2])
    assert ranked["results"][0]["document"] == {"text": TEXTS[2]}
    np.testing.assert_allclose(ranked["results"][0]["relevance_score"], scores.max(), atol=1e-5)
    no_docs = http.post("/v1/rerank", json={"query": "x", "documents": TEXTS, "return_documents": False}).json()
    assert "document" not in no_docs["results"][0] and len(no_docs["results"]) == 3


def test_tokenize_detokenize_models_health_metrics_openapi(http: httpx.Client, reference: dict[str, Runtime]) -> None:
    tokens = http.post("/tokenize", json={"model": "minilm", "prompt": TEXTS[0]}).json()
    assert tokens["tokens"] == reference["minilm"].tokenize(TEXTS[:1]).ids[0]
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 256
    text = http.post("/detokenize", json={"model": "minilm", "tokens": tokens["tokens"]}).json()["prompt"]
    assert "the cat sat on the mat" in text
    models = http.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["minilm", "tiny"]
    assert http.get("/health").json()["status"] == "ok"
    http.post("/v1/embeddings", json={"model": "minilm", "input": "warm"})
    metrics = httpx.get(f"{http.base_url}/metrics").text  # no key needed for scrapers
    for name in (
        "trt_embed_requests_total",
        "trt_embed_queue_size",
        "trt_embed_batch_tokens_bucket",
        "trt_embed_tokenization_seconds_count",
        "trt_embed_inference_seconds_count",
    ):
        assert name in metrics
    spec = http.get("/openapi.json").json()
    assert "/v1/embeddings" in spec["paths"] and "EmbeddingRequest" in spec["components"]["schemas"]


def test_headers(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"input": "hi"}, headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    for name in ("x-queue-time", "x-tokenization-time", "x-inference-time"):
        assert float(response.headers[name]) >= 0
    assert http.post("/v1/embeddings", json={"input": []}).headers["x-request-id"]


def test_error_statuses(live: LiveServer, http: httpx.Client) -> None:
    e = error_of(http.post("/v1/embeddings", json={"input": TEXTS, "dimensions": "many"}), 400)
    assert e["param"] == "dimensions"
    e = error_of(http.post("/v1/embeddings", json={"input": []}), 400)
    assert "empty" in e["message"]
    e = error_of(http.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in e["message"]
    long_text = "word " * 400
    e = error_of(http.post("/v2/embed", json={"texts": [long_text], "truncate": "NONE", "model": "minilm"}), 400)
    assert "maximum context length is 256 tokens. However, you requested 402 tokens" in e["message"]
    e = error_of(httpx.post(f"{live.url}/v1/embeddings", json={"input": "x"}), 401)
    assert "missing API key" in e["message"]
    error_of(httpx.post(f"{live.url}/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer no"}), 401)
    e = error_of(http.post("/v1/embeddings", json={"input": "x", "model": "nope"}), 404)
    assert e["code"] == "model_not_found"
    error_of(http.get("/v1/nothing-here"), 404)
    error_of(http.get("/v1/embeddings"), 405)
    e = error_of(http.post("/v1/embeddings", json={"input": ["x"] * 65}), 413)
    assert "limit is 64" in e["message"]
    error_of(http.post("/v1/embeddings", json={"input": "x" * 300_000}), 413)
    error_of(http.post("/v1/embeddings", content=b"input=x", headers={"content-type": "text/plain"}), 415)


def test_overload_is_429_and_engine_failure_is_503(
    live: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _served_runtime(live, "tiny")
    monkeypatch.setattr(runtime.scheduler, "max_queue", 0)
    e = error_of(http.post("/v1/embeddings", json={"input": "x", "model": "tiny"}), 413)
    assert "can never fit" in e["message"], "more inputs than the whole queue holds: retrying cannot help"
    monkeypatch.undo()

    def full(count: int) -> None:
        raise Overloaded("the queue is full (9 of 9 inputs waiting); retry later", retry_after=2.5)

    monkeypatch.setattr(runtime.scheduler, "admit", full)
    response = http.post("/v1/embeddings", json={"input": "x", "model": "tiny"})
    e = error_of(response, 429)
    assert "queue is full" in e["message"] and response.headers["retry-after"] == "3"
    monkeypatch.undo()
    assert http.post("/v1/embeddings", json={"input": "x", "model": "tiny"}).status_code == 200

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA error: an illegal memory access")

    for engine in runtime.engines:  # the variant's engine and the all-cores one that runs lone requests
        monkeypatch.setattr(engine, "_infer", broken)
    e = error_of(http.post("/v1/embeddings", json={"input": "x", "model": "tiny"}), 503)
    assert "illegal memory access" in e["message"]
    monkeypatch.setattr(runtime.engine, "health", lambda: False)
    error_of(http.get("/health"), 503)
    monkeypatch.undo()
    assert http.post("/v1/embeddings", json={"input": "x", "model": "tiny"}).status_code == 200, "still serving"
    assert http.get("/health").status_code == 200


def _served_runtime(live: LiveServer, name: str) -> Runtime:
    app = live.server.config.loaded_app
    while not hasattr(app, "state"):
        app = app.app
    runtime: Runtime = app.state.ctx.registry.get(name).runtime
    return runtime


def test_many_concurrent_clients_get_their_own_answers(live: LiveServer, reference: dict[str, Runtime]) -> None:
    texts = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "rivers", "music", "code"] * 16)]
    expected = reference["minilm"].embed(texts)

    def one(i: int) -> np.ndarray:
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
            body = c.post("/v1/embeddings", json={"model": "minilm", "input": texts[i]}).json()
            return np.array(body["data"][0]["embedding"], dtype=np.float32)

    with ThreadPoolExecutor(32) as pool:
        got = np.stack(list(pool.map(one, range(len(texts)))))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_chat_messages(live: LiveServer, http: httpx.Client, tmp_path: Any, minilm_artifact: Any) -> None:
    """`messages` go through the model's chat template; a model without one gets a 400."""
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    e = error_of(http.post("/v1/embeddings", json={"model": "minilm", "messages": messages}), 400)
    assert "no chat template" in e["message"] and e["param"] == "messages"

    import json
    import shutil

    from trt_embed.manifest import Manifest, sha256_file

    artifact = tmp_path / "chat"
    shutil.copytree(minilm_artifact, artifact)
    config_path = artifact / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = "{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}"
    config_path.write_text(json.dumps(config))
    manifest = Manifest.read(artifact)  # a changed tokenizer file needs its new hash, or the artifact is refused
    manifest.files["tokenizer/tokenizer_config.json"] = sha256_file(config_path)
    manifest.write(artifact)
    with Runtime.load(artifact) as runtime:
        assert runtime.render_chat(messages) == "<user> What is the capital of France?\n"
        with pytest.raises(InvalidRequest, match=r"messages\[0\] needs `role` and `content`"):
            runtime.render_chat([{"content": "no role"}])

"""text-embeddings-inference's `/embed` and `/info` against TEI's own field lists and Hugging Face's real client."""

from __future__ import annotations

import httpx
import huggingface_hub.constants
import numpy as np
import pytest
from huggingface_hub import InferenceClient

from tests.server.conftest import API_KEY, LiveServer
from trt_embed.runtime import Dense, EmbedRequest, Runtime

TEXTS = ["hello world", "the cat sat on the green paper"]

# TEI's `Info` fields (router/src/lib.rs, huggingface/text-embeddings-inference, struct Info, serde names).
TEI_INFO_FIELDS = {
    "model_id", "model_sha", "model_dtype", "model_type", "prompts", "max_concurrent_requests", "max_input_length",
    "max_batch_tokens", "max_batch_requests", "max_client_batch_size", "auto_truncate", "tokenization_workers",
    "version", "sha", "docker_label",
}  # fmt: skip
# TEI's ErrorResponse fields and ErrorType -> status (router/src/http/server.rs, From<&ErrorType> for StatusCode).
TEI_ERROR_FIELDS = {"error", "error_type"}
TEI_STATUS = {"validation": 413, "tokenizer": 422, "backend": 424, "overloaded": 429, "empty": 400}
# TEI's timing headers on /embed (router/src/http/server.rs).
TEI_HEADERS = ["x-compute-time", "x-compute-tokens", "x-total-time", "x-tokenization-time", "x-queue-time",
               "x-inference-time"]  # fmt: skip


def want(runtime: Runtime, texts: list[str]) -> np.ndarray:
    output = runtime.run(EmbedRequest(inputs=texts)).output
    assert isinstance(output, Dense)
    return np.asarray(output.vectors)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_embed_shape_and_headers(http: httpx.Client, reference: dict[str, Runtime]) -> None:
    response = http.post("/embed", json={"inputs": TEXTS})
    assert response.status_code == 200, response.text
    got = np.asarray(response.json())
    assert got.shape == want(reference["minilm"], TEXTS).shape
    assert cosine(got, want(reference["minilm"], TEXTS)).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)  # normalize defaults to true
    for header in TEI_HEADERS:
        assert header in response.headers, header
    one = http.post("/embed", json={"inputs": TEXTS[0], "normalize": False}).json()
    assert len(one) == 1 and cosine(np.asarray(one[0]), want(reference["minilm"], TEXTS[:1])[0]) >= 0.99999


def test_hugging_face_client(live: LiveServer, reference: dict[str, Runtime], monkeypatch: pytest.MonkeyPatch) -> None:
    # the suite runs offline; this client only reaches the loopback server (POST / on TEI's dispatch)
    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
    client = InferenceClient(base_url=live.url, api_key=API_KEY)
    got = np.asarray(client.feature_extraction(TEXTS))
    assert cosine(got, want(reference["minilm"], TEXTS)).min() >= 0.99999


def test_info_has_teis_fields(http: httpx.Client, reference: dict[str, Runtime]) -> None:
    body = http.get("/info").json()
    assert set(body) == TEI_INFO_FIELDS
    assert body["max_input_length"] == reference["minilm"].max_seq_length and body["auto_truncate"] is True
    assert set(body["model_type"]) <= {"embedding", "classifier", "reranker"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"inputs": TEXTS, "normalize": "yes"}, "normalize"),
        ({"inputs": TEXTS, "truncation_direction": "middle"}, "truncation_direction"),
        ({"inputs": 3}, "inputs"),
        ({"inputs": ["x"] * 65}, "inputs"),
        ({"inputs": "word " * 2000, "truncate": False}, ""),
        ({"inputs": []}, "inputs"),
    ],
)
def test_bad_inputs_in_teis_error_shape(http: httpx.Client, payload: dict[str, object], field: str) -> None:
    response = http.post("/embed", json=payload)
    body = response.json()
    assert set(body) == TEI_ERROR_FIELDS, body
    assert 400 <= response.status_code < 500
    if body["error_type"] in TEI_STATUS and body["error_type"] != "validation":
        assert response.status_code == TEI_STATUS[body["error_type"]]
    assert field in body["error"]


def test_long_input_is_cut_by_default(http: httpx.Client) -> None:
    assert http.post("/embed", json={"inputs": "word " * 2000}).status_code == 200

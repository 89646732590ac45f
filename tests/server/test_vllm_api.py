"""The reference's (vLLM's) documented pooling requests through the real app, checked against sentence-transformers
and transformers: chat input, over-length refusals and truncation, score/rerank fields, binary and fp8 encodings,
errors in its words, and the routes it has (/invocations, /tokenizer_info, /v2/rerank)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import API_KEY, LiveServer
from pydantic import BaseModel

from trt_embed.runtime import Runtime
from trt_embed.server.app import create_app
from trt_embed.server.registry import Registry, Settings

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
]
PLAIN = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
DOCS = ["The capital of Brazil is Brasilia.", "The capital of France is Paris.", "Horses and cows are both animals"]
LONG = "word " * 400  # 402 tokens with [CLS] and [SEP]; the model takes 256


def chat_artifact(minilm_artifact: Path, target: Path) -> Path:
    """all-MiniLM-L6-v2 with a ChatML template in its tokenizer config (its hash updated in the manifest)."""
    from trt_embed.manifest import Manifest, sha256_file

    shutil.copytree(minilm_artifact, target)
    path = target / "tokenizer" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["chat_template"] = CHATML
    path.write_text(json.dumps(config))
    manifest = Manifest.read(target)
    manifest.files["tokenizer/tokenizer_config.json"] = sha256_file(path)
    manifest.write(target)
    return target


def serve(registry: dict[str, Path], chunked: bool = False, **settings: Any) -> LiveServer:
    def load() -> Registry:
        out = Registry()
        for name, artifact in registry.items():
            out.add(Runtime.load(artifact, chunked_processing=chunked), name)
        return out

    return LiveServer(create_app(load, Settings(api_key=API_KEY, **settings)))


@pytest.fixture(scope="module")
def chat_dir(minilm_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_artifact(minilm_artifact, tmp_path_factory.mktemp("chat") / "artifact")


@pytest.fixture(scope="module")
def api(chat_dir: Path) -> Iterator[httpx.Client]:
    with (
        serve({"chat": chat_dir}, trust_request_chat_template=True) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def st(minilm_dir: Path) -> Any:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def hf(minilm_dir: Path) -> tuple[Any, Any]:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    tok.chat_template = CHATML
    return tok, transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()


def hf_embed(hf: tuple[Any, Any], ids: list[int]) -> np.ndarray:
    """Mean pooling + L2 norm with transformers' model: the reference for inputs without special tokens."""
    import torch

    with torch.no_grad():
        hidden = hf[1](input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    vector = hidden.mean(axis=0)
    return np.asarray(vector / np.linalg.norm(vector), dtype=np.float32)


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    return message


def test_chat_on_embeddings_pooling_and_tokenize(
    api: httpx.Client, hf: tuple[Any, Any], st: Any, chat_dir: Path
) -> None:
    tok = hf[0]
    rendered = tok.apply_chat_template(PLAIN, tokenize=False)
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    body = api.post("/v1/embeddings", json={"model": "chat", "messages": MESSAGES, "encoding_format": "float"}).json()
    np.testing.assert_allclose(body["data"][0]["embedding"], hf_embed(hf, ids), atol=2e-5)
    assert body["usage"] == {
        "prompt_tokens": len(ids),
        "total_tokens": len(ids),
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }
    with_specials = api.post("/v1/embeddings", json={"messages": MESSAGES, "add_special_tokens": True}).json()
    np.testing.assert_allclose(with_specials["data"][0]["embedding"], st.encode([rendered])[0], atol=2e-5)
    pooled = api.post("/pooling", json={"messages": MESSAGES}).json()
    np.testing.assert_allclose(pooled["data"][0]["data"], body["data"][0]["embedding"], atol=1e-6)

    generation = tok.apply_chat_template(PLAIN, tokenize=False, add_generation_prompt=True)
    tokens = api.post("/tokenize", json={"messages": MESSAGES}).json()  # /tokenize's default: generation prompt
    assert tokens["tokens"] == tok(generation, add_special_tokens=False)["input_ids"]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with_tools = tok.apply_chat_template(PLAIN, tokenize=False, add_generation_prompt=True, tools=tools)
    tokens = api.post("/tokenize", json={"messages": MESSAGES, "tools": tools}).json()
    assert tokens["tokens"] == tok(with_tools, add_special_tokens=False)["input_ids"]
    assert api.post("/tokenize", json={"prompt": "hi there"}).json()["tokens"] == tok("hi there")["input_ids"]

    both = {"messages": MESSAGES, "add_generation_prompt": True, "continue_final_message": True}
    assert "Cannot set both `continue_final_message`" in error_of(api.post("/v1/embeddings", json=both), 400)
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    assert "embeds text only" in error_of(api.post("/v1/embeddings", json={"messages": image}), 400)
    template = "{% for m in messages %}{{ m.content }} {% endfor %}"
    with (
        serve({"chat": chat_dir}) as server,  # a template from the request runs only where the server trusts it
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as untrusting,
    ):
        refused = error_of(untrusting.post("/v1/embeddings", json={"messages": PLAIN, "chat_template": template}), 400)
        assert "--trust-request-chat-template is not set" in refused
    custom = api.post("/v1/embeddings", json={"messages": PLAIN, "chat_template": template}).json()
    own = tok("You are a helpful assistant. What is the capital of France? ", add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(custom["data"][0]["embedding"], hf_embed(hf, own), atol=2e-5)


def test_over_length_and_truncation(api: httpx.Client, hf: tuple[Any, Any], st: Any, chat_dir: Path) -> None:
    refusal = (
        "This model's maximum context length is 256 tokens. However, you requested 402 tokens in the input for "
        "embedding generation. Please reduce the length of the input."
    )
    for route, body in (("/v1/embeddings", {"input": LONG}), ("/pooling", {"input": [LONG]})):
        message = error_of(api.post(route, json=body), 400)  # the reference's words first, then our fixes
        assert message.startswith(refusal + " ") and "--auto-truncate" in message
        assert '"truncate_prompt_tokens": -1' in message
    whole = api.post("/v1/embeddings", json={"input": LONG, "truncate_prompt_tokens": -1}).json()
    np.testing.assert_allclose(whole["data"][0]["embedding"], st.encode([LONG])[0], atol=2e-5)  # ST cuts at 256
    text = " ".join(f"w{i}" for i in range(50))
    ids = hf[0](text)["input_ids"]
    left = api.post("/v1/embeddings", json={"input": text, "truncate_prompt_tokens": 10, "truncation_side": "left"})
    np.testing.assert_allclose(left.json()["data"][0]["embedding"], hf_embed(hf, [ids[0], *ids[-9:]]), atol=2e-5)
    message = error_of(api.post("/v1/embeddings", json={"input": "x", "truncate_prompt_tokens": 1000}), 400)
    assert message == (
        "truncate_prompt_tokens value (1000) is greater than max_model_len (256). "
        "Please, select a smaller truncation size."
    )
    assert api.post("/v2/embed", json={"texts": [LONG], "truncate": "END"}).status_code == 200
    assert "402 tokens" in error_of(api.post("/v2/embed", json={"texts": [LONG], "truncate": "NONE"}), 400)
    score = error_of(api.post("/score", json={"text_1": "q", "text_2": LONG}), 400)
    assert "tokens in the input for score. Please reduce the length of the input. " in score
    assert "402 tokens" in error_of(api.post("/rerank", json={"query": "q", "documents": [LONG]}), 400)

    with (
        serve({"chat": chat_dir}, auto_truncate=True) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as client,
    ):
        auto = client.post("/v1/embeddings", json={"input": LONG}).json()
        np.testing.assert_allclose(auto["data"][0]["embedding"], st.encode([LONG])[0], atol=2e-5)
        assert client.post("/rerank", json={"query": "q", "documents": [LONG]}).status_code == 200


class RerankDocument(BaseModel):  # the reference's response model, field for field
    text: str | None = None


class RerankResult(BaseModel):
    index: int
    document: RerankDocument
    relevance_score: float


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResult]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))


def test_score_and_rerank(api: httpx.Client, st: Any) -> None:
    query = "What is the capital of France?"
    expected = cosine(st.encode([query]), st.encode(DOCS))
    documented = {"model": "chat", "encoding_format": "float", "text_1": query, "text_2": DOCS[1]}
    response = api.post("/score", json=documented)  # the reference's docs send encoding_format, which /score ignores
    assert response.json()["data"][0]["score"] == pytest.approx(expected[1], abs=1e-5)
    assert response.headers["x-ignored-fields"] == "encoding_format"
    assert response.json()["usage"]["completion_tokens"] == 0
    shapes = (
        {"queries": query, "items": DOCS},
        {"queries": query, "documents": DOCS},
        {"data_1": query, "data_2": DOCS},
    )
    for fields in shapes:
        scores = [d["score"] for d in api.post("/score", json=fields).json()["data"]]
        np.testing.assert_allclose(scores, expected, atol=1e-5)

    for route in ("/rerank", "/v1/rerank", "/v2/rerank"):
        parsed = RerankResponse.model_validate(api.post(route, json={"query": query, "documents": DOCS}).json())
        assert [r.index for r in parsed.results] == list(np.argsort(-expected, kind="stable"))
        assert parsed.results[0].document.text == DOCS[1] and parsed.usage.prompt_tokens > 0
    one = api.post("/rerank", json={"query": query, "documents": DOCS[1], "top_n": 1}).json()
    assert one["results"][0]["relevance_score"] == pytest.approx(expected[1], abs=1e-5)
    instructed = api.post("/rerank", json={"query": query, "documents": DOCS, "instruction": "query: "}).json()
    want = cosine(st.encode(["query: " + query]), st.encode(DOCS))
    np.testing.assert_allclose(sorted(r["relevance_score"] for r in instructed["results"]), sorted(want), atol=1e-5)

    whole_query = st.encode([query]).repeat(3, 0)
    st.max_seq_length = 6  # sentence-transformers' limit counts special tokens, as max_tokens_per_doc does here
    try:
        cut = cosine(whole_query, st.encode(DOCS))
    finally:
        st.max_seq_length = 256
    limited = api.post("/rerank", json={"query": query, "documents": DOCS, "max_tokens_per_doc": 6}).json()
    got = {r["index"]: r["relevance_score"] for r in limited["results"]}
    np.testing.assert_allclose([got[i] for i in range(3)], cut, atol=1e-5)
    zero = {"query": "q", "documents": DOCS, "max_tokens_per_doc": 0}
    assert "max_tokens_per_doc" in error_of(api.post("/rerank", json=zero), 400)
    assert "greater than max_model_len" in error_of(
        api.post("/rerank", json={"query": "q", "documents": DOCS, "max_tokens_per_query": 300}), 400
    )


def test_binary_and_fp8_encodings(api: httpx.Client, st: Any, hf: tuple[Any, Any]) -> None:
    torch = pytest.importorskip("torch")
    texts = ["hello world", "good morning"]
    expected = st.encode(texts)
    raw = api.post("/v1/embeddings", json={"input": texts, "encoding_format": "bytes"})
    assert raw.headers["content-type"] == "application/octet-stream"
    meta = json.loads(raw.headers["metadata"])
    assert meta["usage"]["prompt_tokens"] == sum(len(hf[0](t)["input_ids"]) for t in texts) and [
        d["shape"] for d in meta["data"]
    ] == [[384], [384]]
    rows = [np.frombuffer(raw.content[d["start"] : d["end"]], dtype=np.float32) for d in meta["data"]]
    np.testing.assert_allclose(np.stack(rows), expected, atol=2e-5)
    only = api.post("/pooling", json={"input": texts, "encoding_format": "bytes_only", "embed_dtype": "float16"})
    assert "metadata" not in only.headers
    np.testing.assert_allclose(np.frombuffer(only.content, np.float16).reshape(2, -1), expected, atol=2e-3)

    vectors = np.asarray(api.post("/v1/embeddings", json={"input": texts}).json()["data"][0]["embedding"], np.float32)
    for dtype, torch_dtype in (("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)):
        want = torch.from_numpy(vectors).to(torch_dtype).view(torch.uint8).numpy().tobytes()
        body = api.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64", "embed_dtype": dtype})
        assert base64.b64decode(body.json()["data"][0]["embedding"]) == want
    big = api.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64", "endianness": "big"})
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(big.json()["data"][0]["embedding"]), ">f4"), vectors)


def test_errors_in_the_reference_words(api: httpx.Client) -> None:
    removed = error_of(api.post("/v1/embeddings", json={"input": "x", "normalize": True}), 400)
    assert removed == "Parameter `normalize` was removed; use `use_activation` instead."
    task = error_of(api.post("/pooling", json={"input": "x", "task": "classify"}), 400)
    assert task == "Unsupported task: 'classify' Supported tasks: ('embed', 'token_embed')"
    encoding = error_of(api.post("/v1/embeddings", json={"input": "x", "encoding_format": "floats"}), 400)
    assert "'floats' is not valid" in encoding and "'bytes_only'" in encoding
    typo = api.post("/v1/embeddings", json={"input": "x", "dimensoins": 8, "truncate_prompt_token": 4})
    assert typo.status_code == 200 and typo.headers["x-ignored-fields"] == "dimensoins, truncate_prompt_token"
    raw = api.post("/v1/embeddings", json={"input": "hello", "use_activation": False}).json()["data"][0]["embedding"]
    assert abs(np.linalg.norm(raw) - 1) > 1e-3  # use_activation=False: the pooled vector as is


def test_routes_models_invocations_tokenizer_info(api: httpx.Client, st: Any, hf: tuple[Any, Any]) -> None:
    model = api.get("/v1/models").json()["data"][0]
    assert model["root"] == "chat" and model["permission"][0]["object"] == "model_permission"
    documented = api.post("/pooling", json={"model": "chat", "input": "vLLM is great!"}).json()
    np.testing.assert_allclose(documented["data"][0]["data"], st.encode(["vLLM is great!"])[0], atol=2e-5)
    embedded = api.post("/invocations", json={"input": ["hello"]}).json()
    assert embedded["data"][0]["object"] == "embedding"
    assert api.post("/invocations", json={"query": "q", "documents": DOCS}).json()["results"]
    assert api.post("/invocations", json={"text_1": "a", "text_2": "b"}).json()["data"][0]["object"] == "score"
    assert api.post("/invocations", json={"input": "x", "task": "embed"}).json()["data"][0]["object"] == "pooling"
    assert "cannot tell which API" in error_of(api.post("/invocations", json={"prompt": "x"}), 400)
    info = api.get("/tokenizer_info").json()
    assert info["chat_template"] == CHATML and info["tokenizer_class"]
    cohere = api.post("/v2/embed", json={"texts": ["hello"], "input_type": "search_query"}).json()
    assert cohere["meta"]["billed_units"] == {"input_tokens": len(hf[0]("hello")["input_ids"]), "image_tokens": 0}


def test_chunked_processing_over_http(chat_dir: Path, st: Any) -> None:
    with (
        serve({"chat": chat_dir}, chunked=True) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as client,
    ):
        whole = client.post("/v1/embeddings", json={"input": [LONG, "hello"], "dimensions": None}).json()
        assert whole["usage"]["prompt_tokens"] > 402
        first, second = np.asarray([d["embedding"] for d in whole["data"]], np.float32)
        np.testing.assert_allclose(second, st.encode(["hello"])[0], atol=2e-5)
        assert cosine(first, st.encode([LONG])[0]) > 0.9  # the same words throughout: close to the truncated one
        raw = client.post("/v1/embeddings", json={"input": [LONG], "encoding_format": "bytes"})
        np.testing.assert_allclose(np.frombuffer(raw.content, np.float32), first, atol=1e-6)

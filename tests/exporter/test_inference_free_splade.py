"""Inference-free SPLADE (opensearch-neural-sparse-encoding-doc-v3-distill's layout): a sentence-transformers
Router with a query route of SparseStaticEmbedding (a weight per token, no transformer) and a document route of
MLMTransformer + SpladePooling, saved by sentence-transformers itself. Export -> Runtime against SparseEncoder's
encode_query / encode_document, and the table read from an idf.json against SparseStaticEmbedding.from_json."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import EmbedRequest, Runtime, ScoreRequest
from trt_embed.runtime.types import Sparse

st = pytest.importorskip("sentence_transformers")

QUERIES = ["hello world", "what is a river", "the cat the cat sat", "how fast is the light of one small city"]
DOCUMENTS = ["the cat sat on the green paper in the city", "a river of water at night", "hello world", "a"]


@pytest.fixture(scope="module")
def inference_free(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The SparseEncoder saved with save_pretrained, and its export."""
    import torch
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling
    from transformers import AutoTokenizer

    from trt_embed.exporter import ExportOptions, export_model

    source = tiny_model("BertForMaskedLM")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    generator = torch.Generator().manual_seed(5)
    weight = torch.rand(len(tokenizer.get_vocab()), generator=generator) * 3  # as sentence-transformers sizes it
    weight[torch.rand(len(weight), generator=generator) < 0.3] = 0.0  # tokens without weight leave the support
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=tokenizer, weight=weight, frozen=True)],
        document_modules=[MLMTransformer(str(source)), SpladePooling("max", activation_function="log1p_relu")],
    )
    model = st.SparseEncoder(modules=[router], similarity_fn_name="dot")
    folder = tmp_path_factory.mktemp("inference-free")
    model.save_pretrained(str(folder / "model"))
    export_model(str(folder / "model"), folder / "artifact", ExportOptions(precision="fp32"))
    return folder / "model", folder / "artifact"


def as_dicts(sparse: Sparse) -> list[dict[int, float]]:
    return [dict(zip(i.tolist(), w.tolist(), strict=True)) for i, w in zip(sparse.ids, sparse.weights, strict=True)]


def reference(rows: object) -> list[dict[int, float]]:
    """SparseEncoder's sparse rows as {token id: weight} (its stored entries: the non-zero ones)."""
    dense = rows.to_dense().numpy()  # type: ignore[attr-defined]
    return [{int(i): float(row[i]) for i in np.flatnonzero(row)} for row in dense]


def assert_same(got: list[dict[int, float]], want: list[dict[int, float]]) -> None:
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)  # identical supports
        keys = sorted(w)
        np.testing.assert_allclose([g[k] for k in keys], [w[k] for k in keys], rtol=1e-5, atol=1e-6)


def test_queries_and_documents_match_sparse_encoder(inference_free: tuple[Path, Path]) -> None:
    model_dir, artifact = inference_free
    model = st.SparseEncoder(str(model_dir), device="cpu")
    want_q = reference(model.encode_query(QUERIES, convert_to_tensor=True))
    want_d = reference(model.encode_document(DOCUMENTS, convert_to_tensor=True))
    with Runtime.load(artifact) as rt:
        assert rt.manifest.kind == "splade" and rt.manifest.head_config["query_weights"] == "query_weights.npy"
        queries = rt.run(EmbedRequest(inputs=QUERIES, task="sparse", prompt_name="query"))
        documents = rt.run(EmbedRequest(inputs=DOCUMENTS, task="sparse", prompt_name="document"))
        default = rt.run(EmbedRequest(inputs=DOCUMENTS, task="sparse"))  # the Router's default route: document
        single = [rt.run(EmbedRequest(inputs=[q], task="sparse", prompt_name="query")).output for q in QUERIES]
        vocab = rt.encode(QUERIES, prompt_name="query")  # task "embed": the [vocab] vector
    assert isinstance(queries.output, Sparse) and isinstance(documents.output, Sparse)
    assert queries.timing.batches == 0  # no engine call for queries
    assert_same(as_dicts(queries.output), want_q)
    assert_same(as_dicts(documents.output), want_d)
    assert isinstance(default.output, Sparse)
    assert as_dicts(default.output) == as_dicts(documents.output)
    for n, one in enumerate(single):  # batched == single
        assert isinstance(one, Sparse)
        assert as_dicts(one) == [as_dicts(queries.output)[n]]
    dense_q = model.encode_query(QUERIES, convert_to_tensor=True).to_dense().numpy()
    width = dense_q.shape[1]  # the tiny tokenizer's vocabulary; the MLM's is larger (1024), the rest stays empty
    np.testing.assert_allclose(vocab[:, :width], dense_q, rtol=1e-5, atol=1e-6)
    assert not vocab[:, width:].any()


def test_scores_pair_queries_with_documents(inference_free: tuple[Path, Path]) -> None:
    model_dir, artifact = inference_free
    model = st.SparseEncoder(str(model_dir), device="cpu")
    q = model.encode_query(QUERIES[:1], convert_to_tensor=True).to_dense()
    d = model.encode_document(DOCUMENTS, convert_to_tensor=True).to_dense()
    want = (q @ d[:, : q.shape[1]].T).numpy()[0]  # the query side is as wide as the tiny tokenizer
    with Runtime.load(artifact) as rt:
        got = rt.run_score(ScoreRequest(first=QUERIES[0], second=DOCUMENTS)).scores
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_inspect_names_the_query_table(inference_free: tuple[Path, Path]) -> None:
    from trt_embed.describe import describe

    assert "queries (prompt_name query) by the weight table query_weights.npy" in describe(inference_free[1])


def test_queries_have_no_token_vectors(inference_free: tuple[Path, Path]) -> None:
    with Runtime.load(inference_free[1]) as rt:
        with pytest.raises(InvalidRequest, match="weight table without token vectors"):
            rt.run(EmbedRequest(inputs=["a"], task="token_embed", prompt_name="query"))
        assert len(rt.encode(["a b"], pooling_task="token_embed", prompt_name="document")[0]) == 4  # CLS a b SEP


def test_idf_json_table_matches_from_json(inference_free: tuple[Path, Path], tmp_path: Path) -> None:
    """The other layout of the query route: token -> weight in idf.json, named by the module's config."""
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding
    from transformers import AutoTokenizer

    from trt_embed.exporter import ExportOptions, export_model

    model_dir = tmp_path / "model"
    shutil.copytree(inference_free[0], model_dir)
    module = model_dir / "query_0_SparseStaticEmbedding"
    tokenizer = AutoTokenizer.from_pretrained(str(module))
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    rng = np.random.default_rng(2)
    idf = {vocab[int(i)]: float(rng.uniform(0.1, 5)) for i in rng.choice(len(vocab), 80, replace=False)}
    idf["not-a-token"] = 7.0  # from_json puts it on the unknown token
    (model_dir / "idf.json").write_text(json.dumps(idf))
    (module / "model.safetensors").unlink()
    (module / "config.json").write_text(json.dumps({"frozen": False, "path": "idf.json"}))
    want = SparseStaticEmbedding.from_json(str(model_dir / "idf.json"), tokenizer).weight.detach().numpy()
    artifact = tmp_path / "artifact"
    export_model(str(model_dir), artifact, ExportOptions(precision="fp32", fuse=False))
    np.testing.assert_array_equal(np.load(artifact / "query_weights.npy")[: len(want)], want)
    with Runtime.load(artifact) as rt:
        out = rt.run(EmbedRequest(inputs=QUERIES, task="sparse", prompt_name="query")).output
    assert isinstance(out, Sparse)
    ids = tokenizer(QUERIES, add_special_tokens=False)["input_ids"]
    for n, row in enumerate(ids):
        expected = {t: float(want[t]) for t in set(row) if want[t] != 0}
        assert as_dicts(out)[n] == pytest.approx(expected)


def test_queries_over_http(inference_free: tuple[Path, Path]) -> None:
    """TEI's `prompt_name` on /embed_sparse and ours on /pooling pick the query route, as encode_query does."""
    from starlette.testclient import TestClient

    from trt_embed.server.app import create_app
    from trt_embed.server.registry import Registry, Settings

    model = st.SparseEncoder(str(inference_free[0]), device="cpu")
    want = reference(model.encode_query(QUERIES, convert_to_tensor=True))

    def load() -> Registry:
        registry = Registry()
        registry.add(Runtime.load(inference_free[1]), "ifs")
        return registry

    with TestClient(create_app(load, Settings())) as client:
        tei = client.post("/embed_sparse", json={"inputs": QUERIES, "prompt_name": "query"}).json()
        pooled = client.post("/pooling", json={"input": QUERIES, "task": "sparse", "prompt_name": "query"}).json()
        documents = client.post("/embed_sparse", json={"inputs": QUERIES}).json()
    assert_same([{p["index"]: p["value"] for p in row} for row in tei], want)
    assert_same([dict(zip(d["data"]["indices"], d["data"]["values"], strict=True)) for d in pooled["data"]], want)
    assert [{p["index"] for p in row} for row in documents] != [set(w) for w in want]  # the document route

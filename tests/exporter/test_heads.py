"""Sparse and multi-vector heads end to end (export -> Runtime), against references written here from the
published formulas (SPLADE: Formal et al. / sentence-transformers' SpladePooling / vLLM's SPLADE pooler; bge-m3:
BAAI's FlagEmbedding M3 model) and against sentence-transformers' SparseEncoder itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from trt_embed.runtime import EmbedRequest, Runtime, ScoreRequest
from trt_embed.runtime.types import Dense, Sparse, TokenVectors

TEXTS = [
    "hello world",
    "the cat sat on the green paper in the city",
    "how fast is a river of water at night",
    "a",
    "search the query text for one small token vector, then write it down",
]
COSINE = 0.99999


def tokenized(model_dir: Path, texts: list[str]) -> list[list[int]]:
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    return [tok(t)["input_ids"] for t in texts]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def splade_reference(model_dir: Path, loader: str, texts: list[str], drop_special: bool) -> np.ndarray:
    """SPLADE-max: max over tokens of log(1 + ReLU(MLM logits)); `drop_special`: without a leading CLS and a
    trailing SEP (vLLM), else every real token (sentence-transformers). One text at a time: no padding."""
    mlm = getattr(transformers, loader).from_pretrained(str(model_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    rows = []
    for ids in tokenized(model_dir, texts):
        with torch.no_grad():
            logits = mlm(torch.tensor([ids])).logits[0]  # the encoder sees every token
        if drop_special:  # only the pooling leaves them out
            start = 1 if ids[0] == tok.cls_token_id else 0
            stop = len(ids) - 1 if ids[-1] == tok.sep_token_id else len(ids)
            logits = logits[start:stop]
        rows.append(torch.log1p(torch.relu(logits)).max(dim=0).values.numpy())
    return np.stack(rows)


def dense_of(sparse: Sparse, vocab: int) -> np.ndarray:
    out = np.zeros((len(sparse.ids), vocab), dtype=np.float32)
    for n, (ids, weights) in enumerate(zip(sparse.ids, sparse.weights, strict=True)):
        out[n, ids] = weights
    return out


@pytest.mark.parametrize(
    ("architecture", "loader"),
    [("BertForMaskedLM", "BertForMaskedLM"), ("DistilBertForMaskedLM", "DistilBertForMaskedLM")],
)
def test_splade_matches_sentence_transformers_sparse_encoder(
    architecture: str, loader: str, tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]
) -> None:
    st = pytest.importorskip("sentence_transformers")
    model_dir = tiny_model(architecture)
    encoder = st.SparseEncoder(str(model_dir), device="cpu")
    want = encoder.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
    ours = splade_reference(model_dir, loader, TEXTS, drop_special=False)
    with Runtime.load(tiny_artifact(architecture)) as rt:
        assert rt.manifest.kind == "splade" and rt.manifest.embedding_dim == want.shape[1]
        result = rt.run(EmbedRequest(inputs=TEXTS, task="sparse"))
        vocab_vectors = rt.encode(TEXTS)  # task "embed": the [vocab] vector, as vLLM returns it
    assert isinstance(result.output, Sparse)
    got = dense_of(result.output, want.shape[1])
    for n in range(len(TEXTS)):
        assert cosine(got[n], want[n]) >= COSINE and cosine(got[n], ours[n]) >= COSINE
        assert set(np.flatnonzero(want[n])) == set(result.output.ids[n].tolist())  # identical supports
        assert np.all(np.diff(result.output.weights[n]) <= 0)  # largest first
    np.testing.assert_allclose(vocab_vectors, got, rtol=1e-5, atol=1e-6)


def test_vllm_splade_leaves_cls_and_sep_out(
    tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]
) -> None:
    model_dir = tiny_model("BertSpladeSparseEmbeddingModel")
    want = splade_reference(model_dir, "BertForMaskedLM", TEXTS, drop_special=True)
    with Runtime.load(tiny_artifact("BertSpladeSparseEmbeddingModel")) as rt:
        assert not rt.manifest.normalize  # SPLADE weights come raw
        sparse = rt.run(EmbedRequest(inputs=TEXTS, task="sparse")).output
        single = [rt.run(EmbedRequest(inputs=[t], task="sparse")).output for t in TEXTS]
    assert isinstance(sparse, Sparse)
    got = dense_of(sparse, want.shape[1])
    for n in range(len(TEXTS)):
        assert cosine(got[n], want[n]) >= COSINE
        assert set(np.flatnonzero(want[n])) == set(sparse.ids[n].tolist())
        one = single[n]
        assert isinstance(one, Sparse)
        np.testing.assert_array_equal(one.ids[0], sparse.ids[n])  # batched == single
        np.testing.assert_allclose(one.weights[0], sparse.weights[n], rtol=1e-5, atol=1e-6)


def test_sparse_top_k_and_tokens(tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_model("BertForMaskedLM")))
    with Runtime.load(tiny_artifact("BertForMaskedLM")) as rt:
        full = rt.run(EmbedRequest(inputs=TEXTS[:2], task="sparse")).output
        top = rt.run(EmbedRequest(inputs=TEXTS[:2], task="sparse", top_k=5, return_tokens=True))
    assert isinstance(full, Sparse) and isinstance(top.output, Sparse) and top.output.tokens is not None
    for n in range(2):
        np.testing.assert_array_equal(top.output.ids[n], full.ids[n][:5])
        names = tok.convert_ids_to_tokens(full.ids[n][:5].tolist())  # the tiny vocabulary has unnamed ids
        assert top.output.tokens[n] == [name or "" for name in names]
        assert top.encoded["float"][n]["indices"] == full.ids[n][:5].tolist()


def bge_m3_reference(model_dir: Path, texts: list[str]) -> list[tuple[np.ndarray, dict[int, float], np.ndarray]]:
    """BAAI's M3 formulas: dense = normalize(CLS state); sparse = ReLU(sparse_linear(states)), max per token id,
    without cls/eos/pad/unk; ColBERT = normalize(colbert_linear(states[1:])). One text at a time."""
    encoder = transformers.XLMRobertaModel.from_pretrained(str(model_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    sparse_linear = torch.nn.Linear(encoder.config.hidden_size, 1)
    sparse_linear.load_state_dict(torch.load(model_dir / "sparse_linear.pt", weights_only=True))
    colbert_linear = torch.nn.Linear(encoder.config.hidden_size, encoder.config.hidden_size)
    colbert_linear.load_state_dict(torch.load(model_dir / "colbert_linear.pt", weights_only=True))
    unused = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    out = []
    for ids in tokenized(model_dir, texts):
        with torch.no_grad():
            states = encoder(torch.tensor([ids])).last_hidden_state[0]
            dense = torch.nn.functional.normalize(states[0], dim=-1).numpy()
            weights = torch.relu(sparse_linear(states)).squeeze(-1).numpy()
            colbert = torch.nn.functional.normalize(colbert_linear(states[1:]), dim=-1).numpy()
        lexical: dict[int, float] = {}
        for token, weight in zip(ids, weights.tolist(), strict=True):
            if token not in unused and weight > 0:
                lexical[token] = max(lexical.get(token, 0.0), weight)
        out.append((dense, lexical, colbert))
    return out


def test_bge_m3_three_outputs_from_one_engine_call(
    tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]
) -> None:
    want = bge_m3_reference(tiny_model("BgeM3EmbeddingModel"), TEXTS)
    request = EmbedRequest(inputs=TEXTS, task="embed", also=("sparse", "token_embed"))
    with Runtime.load(tiny_artifact("BgeM3EmbeddingModel")) as rt:
        assert rt.manifest.kind == "bge_m3"
        result = rt.run(request)
        single = [rt.run(EmbedRequest(inputs=[t], task="sparse")).output for t in TEXTS]
        colbert_single = [rt.encode([t], pooling_task="token_embed")[0] for t in TEXTS]
    assert result.timing.batches == 1  # one engine call for all three outputs
    dense, sparse, colbert = result.output, result.also["sparse"], result.also["token_embed"]
    assert isinstance(dense, Dense) and isinstance(sparse, Sparse) and isinstance(colbert, TokenVectors)
    for n, (w_dense, w_sparse, w_colbert) in enumerate(want):
        assert cosine(dense.vectors[n], w_dense) >= COSINE
        got_sparse = dict(zip(sparse.ids[n].tolist(), sparse.weights[n].tolist(), strict=True))
        assert set(got_sparse) == set(w_sparse)  # identical supports, special tokens dropped
        keys = sorted(w_sparse)
        if keys:
            assert cosine(np.array([got_sparse[k] for k in keys]), np.array([w_sparse[k] for k in keys])) >= COSINE
        assert colbert.vectors[n].shape == w_colbert.shape
        assert min(cosine(a, b) for a, b in zip(colbert.vectors[n], w_colbert, strict=True)) >= COSINE
        one = single[n]
        assert isinstance(one, Sparse)
        np.testing.assert_array_equal(one.ids[0], sparse.ids[n])  # batched == single
        np.testing.assert_allclose(colbert_single[n], colbert.vectors[n], rtol=1e-4, atol=1e-5)


def test_bge_m3_weighted_score_matches_numpy(tiny_artifact: Callable[[str], Path]) -> None:
    query, docs = TEXTS[0], TEXTS[1:]
    weights = (0.4, 0.2, 0.4)
    with Runtime.load(tiny_artifact("BgeM3EmbeddingModel")) as rt:
        out = rt.run(EmbedRequest(inputs=[query, *docs], task="embed", also=("sparse", "token_embed")))
        dense_only = rt.score(query, docs)
        combined = rt.run_score(ScoreRequest(first=query, second=docs, weights=weights)).scores
    dense, sparse, colbert = out.output, out.also["sparse"], out.also["token_embed"]
    assert isinstance(dense, Dense) and isinstance(sparse, Sparse) and isinstance(colbert, TokenVectors)
    lexicon = [dict(zip(i.tolist(), w.tolist(), strict=True)) for i, w in zip(sparse.ids, sparse.weights, strict=True)]
    for n in range(len(docs)):
        d = float(dense.vectors[0] @ dense.vectors[n + 1])
        s = sum(w * lexicon[n + 1].get(t, 0.0) for t, w in lexicon[0].items())
        c = float(np.einsum("qh,dh->qd", colbert.vectors[0], colbert.vectors[n + 1]).max(axis=1).mean())
        assert dense_only[n] == pytest.approx(d, abs=1e-5)
        assert combined[n] == pytest.approx((0.4 * d + 0.2 * s + 0.4 * c) / 1.0, abs=1e-5)


def test_splade_score_is_the_sparse_dot(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertForMaskedLM")) as rt:
        vectors = rt.encode(TEXTS)
        scores = rt.score(TEXTS[0], TEXTS[1:])
    assert isinstance(vectors, np.ndarray)
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], rtol=1e-5)


def test_tasks_a_model_lacks_are_refused(tiny_artifact: Callable[[str], Path]) -> None:
    from trt_embed.errors import InvalidRequest

    with Runtime.load(tiny_artifact("BertForMaskedLM")) as rt:
        with pytest.raises(InvalidRequest, match=r"token_classify.*supports: embed, sparse, token_embed"):
            rt.run(EmbedRequest(inputs=["a"], task="token_classify"))
        with pytest.raises(InvalidRequest, match="float"):
            rt.run(EmbedRequest(inputs=["a"], task="sparse", encodings=("base64",)))
        with pytest.raises(InvalidRequest, match="top_k"):
            rt.run(EmbedRequest(inputs=["a"], task="sparse", top_k=0))
        with pytest.raises(InvalidRequest, match="bge-m3"):
            rt.run_score(ScoreRequest(first="a", second="b", weights=(1, 1, 1)))


def test_inspect_shows_the_outputs(tiny_artifact: Callable[[str], Path]) -> None:
    from trt_embed.describe import describe

    text = describe(tiny_artifact("BgeM3EmbeddingModel"))
    assert "tasks embed, sparse, token_classify, token_embed; special tokens [0, 1, 2, 3]" in text
    assert "colbert_vectors:float32['batch', 'sequence', 64]" in text
    assert "SPLADE sparse vector" in describe(tiny_artifact("BertForMaskedLM"))


def test_bge_m3_as_baai_publishes_it(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """config.json says XLMRobertaModel; the heads beside the weights make the export bge-m3."""
    import json
    import shutil

    from trt_embed.exporter import ExportOptions, export_model

    model_dir = tmp_path / "bge-m3"
    shutil.copytree(tiny_model("BgeM3EmbeddingModel"), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["XLMRobertaModel"]}))
    manifest = export_model(str(model_dir), tmp_path / "artifact", ExportOptions(precision="fp32", fuse=False))
    assert (manifest.architecture, manifest.kind) == ("BgeM3EmbeddingModel", "bge_m3")

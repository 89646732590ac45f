"""ColBERT-shaped models saved by sentence-transformers' MultiVectorEncoder (token projection, query/document
prompts as markers, fixed query expansion with unattended mask tokens, a punctuation skiplist on documents):
export -> Runtime against MultiVectorEncoder itself, and MaxSim against NumPy."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import EmbedRequest, Runtime

st = pytest.importorskip("sentence_transformers")

QUERIES = ["hello world", "what is a river", "how fast is the light of one small city at night"]
DOCUMENTS = ["the cat, the dog!", "a river of water in the green city.", "hello world", "music? paper; light"]
COSINE = 0.99999


@pytest.fixture(scope="module")
def multi_vector(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A MultiVectorEncoder over the tiny BERT, saved by sentence-transformers, and its export."""
    import torch
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from sentence_transformers.sentence_transformer.modules import Dense

    from trt_embed.exporter import ExportOptions, export_model

    torch.manual_seed(3)
    expansion = {"strategy": "fixed", "length": 16, "attend": False}
    transformer = Transformer(str(tiny_model("BertModel")), document_length=48, query_expansion=expansion)
    dense = Dense(
        64,
        24,
        bias=False,
        activation_function=torch.nn.Identity(),
        module_input_name="token_embeddings",
        module_output_name="token_embeddings",
    )
    mask = MultiVectorMask(skiplist_words=list(string.punctuation))
    model = st.MultiVectorEncoder(modules=[transformer, dense, mask], prompts={"query": "[Q] ", "document": "[D] "})
    folder = tmp_path_factory.mktemp("multi-vector")
    model.save(str(folder / "model"))
    export_model(str(folder / "model"), folder / "artifact", ExportOptions(precision="fp32"))
    return folder / "model", folder / "artifact"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_queries_and_documents_match_multi_vector_encoder(multi_vector: tuple[Path, Path]) -> None:
    model_dir, artifact = multi_vector
    reference = st.MultiVectorEncoder(str(model_dir), device="cpu")
    want_q = [t.numpy() for t in reference.encode_query(QUERIES)]
    want_d = [t.numpy() for t in reference.encode_document(DOCUMENTS)]
    with Runtime.load(artifact) as rt:
        assert rt.kind == "multi_vector" and not rt.has_dense
        got_q = rt.encode(QUERIES, pooling_task="token_embed", prompt_name="query")
        got_d = rt.encode(DOCUMENTS, pooling_task="token_embed", prompt_name="document")
        single = [rt.encode([d], pooling_task="token_embed", prompt_name="document")[0] for d in DOCUMENTS]
    for got, want in [*zip(got_q, want_q, strict=True), *zip(got_d, want_d, strict=True)]:
        assert got.shape == want.shape  # expansion to 16 query tokens; punctuation dropped from documents
        assert _cosines(got, want).min() >= COSINE
    assert all(g.shape == (16, 24) for g in got_q)
    for one, batched in zip(single, got_d, strict=True):  # batched == single
        np.testing.assert_allclose(one, batched, rtol=1e-4, atol=1e-5)


def test_score_is_maxsim(multi_vector: tuple[Path, Path]) -> None:
    _, artifact = multi_vector
    with Runtime.load(artifact) as rt:
        q = rt.encode(QUERIES[:1], pooling_task="token_embed", prompt_name="query")[0]
        docs = rt.encode(DOCUMENTS, pooling_task="token_embed", prompt_name="document")
        scores = rt.score(QUERIES[0], DOCUMENTS)
    want = [np.einsum("qh,dh->qd", q, d).max(axis=1).sum() for d in docs]
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    with Runtime.load(artifact) as rt, pytest.raises(InvalidRequest, match="supports: token_embed"):
        rt.embed(["hello"])  # no dense output


def test_expansion_tokens_are_not_attended(multi_vector: tuple[Path, Path]) -> None:
    """The real tokens' vectors of an expanded query equal those of the same ids without expansion."""
    _, artifact = multi_vector
    with Runtime.load(artifact) as rt:
        expanded = rt.encode(QUERIES[:1], pooling_task="token_embed", prompt_name="query")[0]
        ids = rt.tokenize(QUERIES[:1], prompt="[Q] ").ids[0]
        plain = rt.run(EmbedRequest(inputs=[ids], task="token_embed")).output
    assert isinstance(plain.vectors, list)  # type: ignore[union-attr]
    np.testing.assert_allclose(expanded[: len(ids)], plain.vectors[0], rtol=1e-4, atol=1e-5)  # type: ignore[union-attr]

"""Sparse dot and MaxSim against NumPy oracles on dense forms; bge-m3's weighted combination."""

from __future__ import annotations

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.outputs.by_kind import sparse_from_tokens, sparse_from_vocab
from trt_embed.runtime.outputs.scoring import combine, maxsim, score_tasks, sparse_dot
from trt_embed.runtime.types import Dense, Sparse, TokenVectors

VOCAB = 50


def random_sparse(rng: np.random.Generator, rows: int) -> tuple[Sparse, np.ndarray]:
    dense = np.where(rng.random((rows, VOCAB)) < 0.2, rng.random((rows, VOCAB)), 0.0).astype(np.float32)
    pairs = [sparse_from_vocab(row, None) for row in dense]
    return Sparse(ids=[p[0] for p in pairs], weights=[p[1] for p in pairs]), dense


@pytest.mark.parametrize("left_rows", [1, 4])
def test_sparse_dot_matches_dense_dot(left_rows: int) -> None:
    rng = np.random.default_rng(0)
    a, a_dense = random_sparse(rng, left_rows)
    b, b_dense = random_sparse(rng, 4)
    want = (np.broadcast_to(a_dense, b_dense.shape) * b_dense).sum(axis=1)
    np.testing.assert_allclose(sparse_dot(a, b), want, rtol=1e-6)


@pytest.mark.parametrize("mean", [False, True])
def test_maxsim_matches_einsum(mean: bool) -> None:
    rng = np.random.default_rng(1)
    queries = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 5)]
    docs = [rng.standard_normal((n, 8)).astype(np.float32) for n in (7, 2)]
    want = [np.einsum("qh,dh->qd", q, d).max(axis=1) for q, d in zip(queries, docs, strict=True)]
    want_scores = [w.mean() if mean else w.sum() for w in want]
    np.testing.assert_allclose(maxsim(queries, docs, mean=mean), want_scores, rtol=1e-5)
    one = maxsim(queries[:1], docs, mean=mean)  # 1:N
    np.testing.assert_allclose(
        one[1], np.einsum("qh,dh->qd", queries[0], docs[1]).max(axis=1).sum() / (3 if mean else 1), rtol=1e-5
    )


def test_token_weights_aggregate_by_id_with_max() -> None:
    ids, weights = sparse_from_tokens(
        np.array([0.9, 0.5, 0.0, 0.7, 0.3, 0.8], np.float32), [0, 7, 9, 7, 4, 2], skip=[0, 2], top_k=None
    )
    assert ids.tolist() == [7, 4] and weights.tolist() == pytest.approx([0.7, 0.3])


def test_weighted_combination() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((3, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sparse, dense_sparse = random_sparse(rng, 3)
    tokens = [rng.standard_normal((n, 4)).astype(np.float32) for n in (2, 3, 4)]
    outputs = {"embed": Dense(vectors), "sparse": sparse, "token_embed": TokenVectors(tokens)}
    got = combine(1, outputs, (1.0, 2.0, 3.0))  # type: ignore[arg-type]
    for n in (1, 2):
        d = float(vectors[0] @ vectors[n])
        s = float(dense_sparse[0] @ dense_sparse[n])
        c = float(np.einsum("qh,dh->qd", tokens[0], tokens[n]).max(axis=1).mean())
        assert got[n - 1] == pytest.approx((d + 2 * s + 3 * c) / 6, rel=1e-5)


def test_score_tasks_by_kind() -> None:
    assert score_tasks("dense", None) == ("embed",)
    assert score_tasks("splade", None) == ("sparse",)
    assert score_tasks("bge_m3", (1, 0, 1)) == ("embed", "token_embed")
    with pytest.raises(InvalidRequest, match="non-negative"):
        score_tasks("bge_m3", (1, -1, 1))
    with pytest.raises(InvalidRequest, match="bge-m3"):
        score_tasks("dense", (1, 1, 1))

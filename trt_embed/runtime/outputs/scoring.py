"""All scoring in one place: vLLM's pairing rules and similarity of paired rows."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from trt_embed.errors import InputTooLong, InvalidRequest
from trt_embed.runtime.images.sources import is_image
from trt_embed.runtime.kinds import kind_of
from trt_embed.runtime.outputs.pair_scores import scores
from trt_embed.runtime.types import (
    Dense,
    EmbedRequest,
    EmbedResult,
    Output,
    PoolingTask,
    ScoreRequest,
    ScoreResult,
    Sparse,
    Timing,
    TokenVectors,
    Vectors,
)


def pair_inputs(first: str | Sequence[Any], second: str | Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """vLLM's score pairing rules; returns the two sides with the first side of length 1 or len(second)."""
    left = [first] if isinstance(first, str) or is_image(first) else list(first)  # an image: CLIP/SigLIP
    right = [second] if isinstance(second, str) or is_image(second) else list(second)
    for side, name in ((left, "text_1"), (right, "text_2")):
        if not side:
            raise InvalidRequest(f"{name} is empty: both sides of a score request need at least one text", name)
    if len(left) != 1 and len(left) != len(right):
        raise InvalidRequest(
            f"text_1 has {len(left)} items and text_2 has {len(right)}: give one text_1 (1:N) or as many as "
            "text_2 (N:N pairwise)",
            "text_1",
        )
    return left, right


def cosine(a: Vectors, b: Vectors) -> Vectors:
    """Row-wise cosine similarity of two [N, D] arrays; a single row on the left is paired with every right
    row. Rows need not be normalized."""
    if len(a) == 1:
        a = np.repeat(a, len(b), axis=0)
    norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    scores: Vectors = ((a * b).sum(axis=-1) / norms).astype(np.float32)
    return scores


WEIGHTED_TASKS: tuple[PoolingTask, ...] = ("embed", "sparse", "token_embed")  # bge-m3's dense, sparse, ColBERT


def sparse_dot(a: Sparse, b: Sparse) -> Vectors:
    """Row-wise dot products of sparse vectors (token id -> weight); one row on the left pairs with every right
    row. The lexical-matching score of SPLADE and bge-m3."""
    left = range(len(b.ids)) if len(a.ids) != 1 else [0] * len(b.ids)
    scores = np.zeros(len(b.ids), dtype=np.float32)
    for n, m in enumerate(left):
        _, i, j = np.intersect1d(a.ids[m], b.ids[n], assume_unique=True, return_indices=True)
        scores[n] = float(np.dot(a.weights[m][i].astype(np.float64), b.weights[n][j]))
    return scores


def maxsim(queries: list[Vectors], documents: list[Vectors], *, mean: bool = False) -> Vectors:
    """Late interaction: for each query token the best-matching document token's dot product, summed over the
    query tokens (`mean`: divided by their count, as bge-m3's colbert_score does); 1:N pairing as `cosine`."""
    left = queries * len(documents) if len(queries) == 1 else queries
    scores = np.zeros(len(documents), dtype=np.float32)
    for n, (q, d) in enumerate(zip(left, documents, strict=True)):
        best = (q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1)
        scores[n] = best.mean() if mean else best.sum()
    return scores


def score_tasks(kind: str, weights: tuple[float, float, float] | None) -> tuple[PoolingTask, ...]:
    """What a score request computes for a model kind: cosine of dense vectors, sparse dot (SPLADE), or
    bge-m3's dense, sparse and ColBERT scores when weights are given."""
    if weights is None:
        return kind_of(kind).score
    if not kind_of(kind).weighted_score:
        raise InvalidRequest("score weights apply to bge-m3 (dense, sparse, ColBERT) models only", "weights")
    if len(weights) != 3 or any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights):
        raise InvalidRequest(f"weights must be three non-negative numbers (dense, sparse, colbert), got {weights!r}")
    if sum(weights) <= 0:
        raise InvalidRequest("weights must not all be zero", "weights")
    return tuple(task for task, w in zip(WEIGHTED_TASKS, weights, strict=True) if w > 0)


def combine(n_left: int, outputs: dict[PoolingTask, Output], weights: tuple[float, float, float] | None) -> Vectors:
    """The score of each pair from the outputs of `score_tasks`: left rows first, then right rows."""
    parts: list[tuple[float, Vectors]] = []
    for task, output in outputs.items():
        if isinstance(output, Dense):
            score = cosine(output.vectors[:n_left], output.vectors[n_left:])
        elif isinstance(output, Sparse):
            score = sparse_dot(_rows(output, 0, n_left), _rows(output, n_left, None))
        else:
            score = maxsim(output.vectors[:n_left], output.vectors[n_left:], mean=True)
        weight = 1.0 if weights is None else weights[WEIGHTED_TASKS.index(task)]
        parts.append((weight, score))
    total = np.zeros_like(parts[0][1], dtype=np.float64)
    for weight, score in parts:
        total += weight * score
    combined: Vectors = (total / sum(w for w, _ in parts)).astype(np.float32)
    return combined


def _rows(output: Sparse, start: int, stop: int | None) -> Sparse:
    return Sparse(ids=output.ids[start:stop], weights=output.weights[start:stop])


def score_requests(
    kind: str, prompts: Collection[str], request: ScoreRequest, left: list[str], right: list[str], sides: bool
) -> list[EmbedRequest]:
    """The embed requests a score request needs: one over both sides (one engine pass), or with `sides` (a
    multi-vector model, inference-free SPLADE) the queries (prompt "query": expanded) and the documents (prompt
    "document") apart."""
    task, *also = score_tasks(kind, request.weights)
    both = dataclasses.replace(side_request(request, [*left, *right], None), task=task, also=tuple(also))
    if not sides:
        return [both]
    query, document = (name if name in prompts else None for name in ("query", "document"))
    return [
        dataclasses.replace(both, inputs=left, prompt_name=query, prompt=None),
        dataclasses.replace(both, inputs=right, prompt_name=document, prompt=None),
    ]


def side_request(request: ScoreRequest, texts: list[str], max_tokens: int | None) -> EmbedRequest:
    """Texts of a score request as an embed request; `max_tokens` truncates them to that many tokens."""
    return EmbedRequest(
        inputs=texts,
        truncate=request.truncate if max_tokens is None else "end",
        truncate_prompt_tokens=request.truncate_prompt_tokens if max_tokens is None else max_tokens,
        prompt_name=request.prompt_name,
        prompt=request.prompt,
        priority=request.priority,
        variant=request.variant,
    )


def summed(timings: Sequence[Timing]) -> Timing:
    """Where the time of several runs went, added up field by field."""
    return Timing(*(sum(getattr(t, f.name) for t in timings) for f in dataclasses.fields(Timing)))


def score_result(kind: str, request: ScoreRequest, n_left: int, results: list[EmbedResult]) -> ScoreResult:
    """Scores from the results of `score_requests`: MaxSim (summed) for multi-vector models, else `combine`."""
    if len(results) == 2:  # queries and documents encoded apart
        queries, documents = (r.output for r in results)
        timing = summed([r.timing for r in results])
        tokens = sum(r.num_tokens for r in results)
        if isinstance(queries, Sparse) and isinstance(documents, Sparse):
            return ScoreResult(sparse_dot(queries, documents), tokens, timing)
        assert isinstance(queries, TokenVectors) and isinstance(documents, TokenVectors)
        return ScoreResult(maxsim(queries.vectors, documents.vectors), tokens, timing)
    (result,) = results
    outputs = {score_tasks(kind, request.weights)[0]: result.output, **result.also}
    return ScoreResult(combine(n_left, outputs, request.weights), result.num_tokens, result.timing)


def pair_scores(first: EmbedResult, second: EmbedResult) -> ScoreResult:
    """Cosine of the two sides' vectors (1:N or N:N), their tokens and their time added up."""
    assert isinstance(first.output, Dense) and isinstance(second.output, Dense)
    scores = cosine(first.output.vectors, second.output.vectors)
    return ScoreResult(scores, first.num_tokens + second.num_tokens, summed([first.timing, second.timing]))


@contextlib.contextmanager
def score_errors() -> Iterator[None]:
    """An over-long input in a score request is refused in the reference's words for scoring."""
    try:
        yield
    except InputTooLong as exc:
        raise InputTooLong(str(exc).replace("for embedding generation.", "for score."), exc.param) from None


def cross_encoder_runs(
    head: Mapping[str, Any], request: ScoreRequest, left: list[Any], right: list[Any]
) -> tuple[list[EmbedRequest], Callable[[list[EmbedResult]], ScoreResult]]:
    """A cross-encoder's score request: one run over the (first, second) pairs (1:N or N:N), then the
    CrossEncoder activation of the manifest on the logits ([N] for one label, [N, num_labels] otherwise)."""
    if request.first_max_tokens is not None or request.second_max_tokens is not None:
        raise InvalidRequest(
            "per-side token limits are not applied to cross-encoders yet: the pair is cut to the model's limit "
            "(longest side first)",
            "max_tokens_per_doc",
        )
    firsts = left * len(right) if len(left) == 1 else left
    for n, text in enumerate([*firsts[:1], *right]):
        if not isinstance(text, str):
            side = "query" if n == 0 else f"documents[{n - 1}]"
            raise InvalidRequest(f"{side} must be a string for a cross-encoder, got {type(text).__name__}", side)
    run = EmbedRequest(
        pairs=list(zip(firsts, right, strict=True)), task="score", priority=request.priority, variant=request.variant
    )

    def finish(results: list[EmbedResult]) -> ScoreResult:
        (result,) = results
        assert isinstance(result.output, Dense)
        logits = result.output.vectors
        return ScoreResult(scores(logits, head.get("activation", "sigmoid")), result.num_tokens, result.timing)

    return [run], finish

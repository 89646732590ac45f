"""Rerank and classify results: documents ordered by score (sentence-transformers' CrossEncoder.rank), and a
classifier's label and probabilities per text (vLLM's /classify fields). Pure numpy."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.outputs.pair_scores import scores
from trt_embed.runtime.types import Dense, EmbedRequest, EmbedResult, Vectors


@dataclasses.dataclass(frozen=True)
class Ranked:
    index: int  # the document's position in the request
    score: float


@dataclasses.dataclass(frozen=True)
class Classified:
    label: str  # the most probable class's name (the model's id2label)
    probs: list[float]  # every class's probability, in class order
    logits: list[float]

    @property
    def num_classes(self) -> int:
        return len(self.probs)


def check_rerank(query: Any, documents: Any, top_n: Any) -> list[str]:
    """The documents of a rerank request, refused when empty or not strings; top_n a positive integer or None."""
    if not isinstance(query, str):
        raise InvalidRequest(f"query must be a string, got {type(query).__name__}", "query")
    if isinstance(documents, str) or not isinstance(documents, Sequence) or len(documents) == 0:
        raise InvalidRequest("documents must be a non-empty list of strings", "documents")
    for n, document in enumerate(documents):
        if not isinstance(document, str):
            raise InvalidRequest(f"documents[{n}] must be a string, got {type(document).__name__}", "documents")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n <= 0):
        raise InvalidRequest(f"top_n must be a positive integer, got {top_n!r}", "top_n")
    return list(documents)


def ranked(values: Vectors, top_n: int | None) -> list[Ranked]:
    """Documents best first (stable for equal scores); a model with several labels has no single relevance."""
    if values.ndim != 1:
        raise InvalidRequest(
            f"this model outputs {values.shape[-1]} labels per pair, not one relevance score: use score or classify",
            "model",
        )
    order = np.argsort(-values, kind="stable")[:top_n]
    return [Ranked(int(i), float(values[i])) for i in order]


def classify_request(texts: Sequence[str], model: str | None, priority: int) -> EmbedRequest:
    if isinstance(texts, str):
        texts = [texts]
    return EmbedRequest(inputs=list(texts), task="classify", variant=model, priority=priority)


def classified(head: Mapping[str, Any], result: EmbedResult) -> list[Classified]:
    """Each text's probabilities (the manifest's classify activation) and most probable label."""
    assert isinstance(result.output, Dense)
    logits = result.output.vectors
    probs = scores(logits, head.get("classify_activation", "softmax")).reshape(len(logits), -1)
    names = head.get("id2label", {})
    return [
        Classified(str(names.get(str(int(row.argmax())), f"LABEL_{int(row.argmax())}")), row.tolist(), raw.tolist())
        for row, raw in zip(probs, logits, strict=True)
    ]

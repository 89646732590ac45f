"""What each model kind answers: one row per manifest `kind`, read by every check that depends on it.

A kind says which pooling tasks it answers and the graph output each reads, whether it has a dense sentence
embedding, how its sparse and token outputs are formed, and what `score`/`rerank` compute for it. Adding a model
kind = one row here (and its exporter family); the runtime branches on these fields, never on the kind's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.types import PoolingTask


@dataclasses.dataclass(frozen=True)
class ModelKind:
    name: str
    outputs: Mapping[str, str]  # pooling task -> the graph output it reads (the tasks it answers: the keys)
    dense: bool  # `sentence_embedding` is a dense sentence embedding (SPLADE's is a [vocab] vector)
    sparse_from: Literal["vocab", "tokens"] | None = None  # a [vocab] vector (SPLADE) or per-token weights (bge-m3)
    token_vectors: Literal["as computed", "colbert", "multi_vector"] = "as computed"  # colbert: CLS dropped, normalized
    score: tuple[PoolingTask, ...] = ("embed",)  # what `score` compares when no weights are given
    weighted_score: bool = False  # `score` weights dense, sparse and ColBERT scores (bge-m3)
    queries_apart: bool = False  # queries are encoded unlike documents (expansion, skiplist)
    token_blocks: bool = False  # dense `embed` of a list may run through token blocks (one pooled row each)
    pairs: bool = False  # the graph reads (query, document) pairs: `score`/`rerank` run it on them (cross-encoders)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.outputs)

    def graph_output(self, task: str) -> str:
        """The graph output a task reads; a task the model kind lacks is the client's error."""
        if task not in self.outputs:
            raise InvalidRequest(
                f"task {task!r} is not available for this model ({self.name}); it supports: {', '.join(self.outputs)}",
                "task",
            )
        return self.outputs[task]


KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "dense", {"embed": "sentence_embedding", "token_embed": "token_embeddings"}, dense=True, token_blocks=True
        ),
        ModelKind(
            "splade",
            {"embed": "sentence_embedding", "sparse": "sentence_embedding", "token_embed": "token_embeddings"},
            dense=False,
            sparse_from="vocab",
            score=("sparse",),
        ),
        ModelKind(
            "bge_m3",
            {
                "embed": "sentence_embedding",
                "sparse": "token_weights",
                "token_classify": "token_weights",
                "token_embed": "colbert_vectors",
            },
            dense=True,
            sparse_from="tokens",
            token_vectors="colbert",
            weighted_score=True,
        ),
        ModelKind(
            "multi_vector",
            {"token_embed": "colbert_vectors"},
            dense=False,
            token_vectors="multi_vector",
            score=("token_embed",),
            queries_apart=True,
        ),
        # *ForSequenceClassification (exporter/cross_encoder.py): `logits` [B, num_labels] of pairs or texts
        ModelKind("cross_encoder", {"score": "logits", "classify": "logits"}, dense=False, score=(), pairs=True),
    )
}


def kind_of(name: str) -> ModelKind:
    """The row of a manifest's kind; an artifact of a kind this runtime does not know asks for an upgrade."""
    kind = KINDS.get(name)
    if kind is None:
        raise InvalidRequest(f"this artifact's model kind {name!r} is unknown to this trt-embed; upgrade it", "task")
    return kind

"""Inference-free SPLADE's query side (opensearch-neural-sparse-encoding-doc-v3-distill): a query's sparse vector
is the artifact's per-token weight table at the query's tokens (tokenized without special tokens), as
sentence-transformers' `SparseStaticEmbedding` computes it. NumPy only: no engine call, no queue.

Queries are requests with the prompt name "query" (`encode_query`); everything else is a document and runs
through the SPLADE graph (`encode_document`, the Router's default route).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trt_embed.errors import ArtifactError, InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.outputs import is_query
from trt_embed.runtime.prepare import Preparer, token_limit
from trt_embed.runtime.types import EmbedRequest, Row, Timing, Vectors

QUERY_TASKS = ("embed", "sparse")  # the query side has a [vocab] vector and its sparse form, no token vectors


class QueryTable:
    """The [vocab] weight table of the query route."""

    def __init__(self, weights: Vectors) -> None:
        self.weights = weights

    @classmethod
    def load(cls, directory: Path, manifest: Manifest) -> QueryTable | None:
        """The artifact's table (its sha256 was checked with the other files), or None for other models."""
        name = manifest.head_config.get("query_weights")
        if name is None:
            return None
        weights = np.load(directory / str(name), allow_pickle=False)
        if weights.ndim != 1 or weights.dtype != np.float32 or len(weights) != manifest.embedding_dim:
            raise ArtifactError(
                f"{name}: expected a float32 [{manifest.embedding_dim}] query weight table, got {weights.dtype} "
                f"{list(weights.shape)}; re-export the model"
            )
        return cls(weights)

    def serves(self, request: EmbedRequest) -> bool:
        """Whether the query route answers `request`; a query asking for token vectors is refused."""
        if not is_query(request):
            return False
        for task in (request.task, *request.also):
            if task not in QUERY_TASKS:
                raise InvalidRequest(
                    f"task {task!r} is not available for queries of this inference-free SPLADE model: its query "
                    f"side is a weight table without token vectors; it supports: {', '.join(QUERY_TASKS)}",
                    "task",
                )
        return True

    def rows(self, preparer: Preparer, request: EmbedRequest) -> tuple[list[Row], list[Sequence[int]], int, Timing]:
        """Each query's [vocab] vector (the weights of the tokens present), its token ids, the token count and
        the time it took."""
        started = time.perf_counter()
        tokens = preparer.tokenize(
            preparer.texts_of(request),
            prompt=preparer.resolve_prompt(request.prompt_name, request.prompt),
            truncate=request.truncate,
            max_tokens=token_limit(request.truncate_prompt_tokens, preparer.manifest.max_seq_length),
            add_special_tokens=False,  # as SparseStaticEmbedding tokenizes
        )
        rows: list[Row] = []
        for ids in tokens.ids:
            row = np.zeros_like(self.weights)
            present = np.unique(np.asarray(ids, dtype=np.int64))
            row[present] = self.weights[present]
            rows.append(row)
        took = time.perf_counter() - started
        return rows, list(tokens.ids), sum(len(i) for i in tokens.ids), Timing(prepare=took)

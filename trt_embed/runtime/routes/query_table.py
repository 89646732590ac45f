"""Inference-free SPLADE's query side (opensearch-neural-sparse-encoding-doc-v3-distill): a query's sparse vector
is the artifact's per-token weight table at the query's tokens (tokenized without special tokens), as
sentence-transformers' `SparseStaticEmbedding` computes it. NumPy only: no engine call, no queue.

Queries are requests with the prompt name "query" (`encode_query`); everything else is a document and runs
through the SPLADE graph (`encode_document`, the Router's default route: here the text routes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from trt_embed.errors import ArtifactError, InvalidRequest
from trt_embed.runtime.batching.work import EngineRows
from trt_embed.runtime.outputs.by_kind import is_query
from trt_embed.runtime.routes.base import Answer, Job, RouteContext, Staged
from trt_embed.runtime.routes.text import TextRoute
from trt_embed.runtime.text.prepare import token_limit
from trt_embed.runtime.types import EmbedRequest, Row, Vectors

QUERY_TASKS = ("embed", "sparse")  # the query side has a [vocab] vector and its sparse form, no token vectors


class QueryTableRoute(TextRoute):
    """The query route of an inference-free SPLADE model: its [vocab] weight table; checks as the text route."""

    name = "query_table"
    splits_queries = True  # score encodes queries here and documents through the graph

    def __init__(self, context: RouteContext, weights: Vectors) -> None:
        super().__init__(context)
        self.weights = weights

    @classmethod
    def build(cls, context: RouteContext) -> QueryTableRoute | None:
        """The artifact's table (its sha256 was checked with the other files), or None for other models."""
        manifest = context.manifest
        name = manifest.head_config.get("query_weights")
        if name is None:
            return None
        weights = np.load(context.directory / str(name), allow_pickle=False)
        if weights.ndim != 1 or weights.dtype != np.float32 or len(weights) != manifest.embedding_dim:
            raise ArtifactError(
                f"{name}: expected a float32 [{manifest.embedding_dim}] query weight table, got {weights.dtype} "
                f"{list(weights.shape)}; re-export the model"
            )
        return cls(context, weights)

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

    def inline(self, request: EmbedRequest) -> bool:
        return True  # NumPy over a few token ids: no engine call, no queue

    def start(self, request: EmbedRequest, variant: str) -> Job:
        return QueryJob(self, request)

    def query_rows(self, request: EmbedRequest) -> tuple[list[Row], list[Sequence[int]]]:
        """Each query's [vocab] vector (the weights of the tokens present) and its token ids."""
        preparer = self.preparer
        tokens = preparer.tokenize(
            preparer.texts_of(request),
            prompt=preparer.resolve_prompt(request.prompt_name, request.prompt),
            truncate=request.truncate,
            max_tokens=token_limit(request.truncate_prompt_tokens, self.manifest.max_seq_length),
            add_special_tokens=False,  # as SparseStaticEmbedding tokenizes
        )
        rows: list[Row] = []
        for ids in tokens.ids:
            row = np.zeros_like(self.weights)
            present = np.unique(np.asarray(ids, dtype=np.int64))
            row[present] = self.weights[present]
            rows.append(row)
        return rows, list(tokens.ids)


class QueryJob(Job):
    """Answered while it is prepared: no groups for the scheduler."""

    def __init__(self, route: QueryTableRoute, request: EmbedRequest) -> None:
        self.route, self.request = route, request
        self.found: tuple[list[Row], list[Sequence[int]]] = ([], [])

    def chunks(self) -> Iterable[None]:
        return [None]

    def prepare(self, chunk: None) -> Staged:
        self.found = self.route.query_rows(self.request)
        return Staged([], sum(len(i) for i in self.found[1]))

    def take(self, staged: Staged, results: list[EngineRows]) -> None:
        pass

    def answer(self) -> Answer:
        return self.found

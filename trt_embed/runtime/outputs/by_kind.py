"""Output kinds beyond one dense vector: which graph output each pooling task reads in each model kind, and the
post-processing of sparse (SPLADE, bge-m3) and multi-vector (bge-m3's ColBERT) outputs.

Model kinds (the manifest's `kind`): `dense` (any encoder), `splade` (`sentence_embedding` is the [vocab] SPLADE
vector), `bge_m3` (dense CLS, per-token sparse weights and ColBERT vectors from one graph).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.kinds import KINDS, kind_of
from trt_embed.runtime.outputs.postprocess import finish, l2_normalize
from trt_embed.runtime.types import (
    Dense,
    EmbedRequest,
    Output,
    PoolingTask,
    Prepared,
    Row,
    Sparse,
    TokenVectors,
    Vectors,
    text_input,
)


def tasks_of(kind: str) -> list[str]:
    """The pooling tasks a model of this kind answers (none for a kind this runtime does not know)."""
    row = KINDS.get(kind)
    return list(row.tasks) if row is not None else []


def graph_output(kind: str, task: str) -> str:
    """The graph output a task reads; a task the model kind lacks is the client's error."""
    return kind_of(kind).graph_output(task)


def batch_output(kind: str, request: EmbedRequest) -> str:
    """The graph outputs one engine call reads for `request` (its task and its `also` tasks), "+"-joined."""
    return "+".join(dict.fromkeys(graph_output(kind, t) for t in (request.task, *request.also)))


def check_sparse_options(request: EmbedRequest) -> None:
    top_k = request.top_k
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidRequest(f"top_k must be a positive integer, got {top_k!r}", "top_k")
    sparse = "sparse" in (request.task, *request.also)
    if (top_k is not None or request.return_tokens) and not sparse:
        raise InvalidRequest("top_k and return_tokens apply to the sparse task only", "top_k")
    if request.task == "sparse" and not request.also and any(e != "float" for e in request.encodings):
        raise InvalidRequest("sparse outputs are returned as float (token ids and weights) only", "encoding_format")
    if request.also and any(e not in ("float", "base64") for e in request.encodings):
        raise InvalidRequest(
            "several outputs in one request come as float or base64 (sparse ones always as indices and values)",
            "encoding_format",
        )


def pick(rows: Sequence[Row], name: str) -> list[Vectors]:
    """One graph output's rows out of the engine's rows (a dict per row when several outputs were read)."""
    return [row[name] if isinstance(row, dict) else row for row in rows]


def sparse_from_vocab(vector: Vectors, top_k: int | None) -> tuple[npt.NDArray[np.int64], Vectors]:
    """A [vocab] SPLADE vector -> its non-zero entries, largest first (ties: lower id first)."""
    ids = np.flatnonzero(vector > 0)
    return _top(ids.astype(np.int64), vector[ids], top_k)


def sparse_from_tokens(
    weights: Vectors, token_ids: Sequence[int], skip: Sequence[int], top_k: int | None
) -> tuple[npt.NDArray[np.int64], Vectors]:
    """bge-m3: per-token weights [n] -> the max weight per token id, special tokens and zero weights left out."""
    ids = np.asarray(token_ids, dtype=np.int64)
    values = weights.reshape(-1).astype(np.float32)
    keep = (values > 0) & ~np.isin(ids, np.asarray(skip, dtype=np.int64))
    ids, values = ids[keep], values[keep]
    unique, inverse = np.unique(ids, return_inverse=True)
    best = np.zeros(len(unique), dtype=np.float32)
    np.maximum.at(best, inverse, values)
    return _top(unique, best, top_k)


def _top(ids: npt.NDArray[np.int64], weights: Vectors, top_k: int | None) -> tuple[npt.NDArray[np.int64], Vectors]:
    order = np.lexsort((ids, -weights))[: top_k or None]
    return ids[order], np.ascontiguousarray(weights[order], dtype=np.float32)


def sparse_output(
    kind: str,
    rows: list[Vectors],
    token_ids: Sequence[Sequence[int]],
    request: EmbedRequest,
    skip: Sequence[int],
    decode: Any,
) -> Sparse:
    """The sparse result of each input; `decode(id) -> str | None` names the tokens when asked."""
    if kind_of(kind).sparse_from == "vocab":
        pairs = [sparse_from_vocab(r, request.top_k) for r in rows]
    else:
        pairs = [sparse_from_tokens(r, ids, skip, request.top_k) for r, ids in zip(rows, token_ids, strict=True)]
    tokens = [[decode(int(i)) or "" for i in ids] for ids, _ in pairs] if request.return_tokens else None
    return Sparse(ids=[p[0] for p in pairs], weights=[p[1] for p in pairs], tokens=tokens)


def token_output(kind: str, rows: list[Vectors], normalize: bool | None) -> TokenVectors:
    """Per-token vectors: as computed (normalized when asked), or bge-m3's ColBERT vectors (CLS dropped,
    normalized unless `normalize=False`)."""
    if kind_of(kind).token_vectors == "colbert":
        return TokenVectors([l2_normalize(r[1:]) if normalize is not False else _f32(r[1:]) for r in rows])
    return TokenVectors([l2_normalize(r) if normalize else _f32(r) for r in rows])


def token_weights(rows: list[Vectors]) -> TokenVectors:
    """vLLM's token_classify of bge-m3: each token's sparse weight, as [n, 1]."""
    return TokenVectors([_f32(r).reshape(-1, 1) for r in rows])


def encode_sparse(output: Sparse) -> list[dict[str, Any]]:
    """Sparse results as JSON-ready dicts: `indices`, `values` (and `tokens` when decoded)."""
    encoded: list[dict[str, Any]] = []
    for n, (ids, weights) in enumerate(zip(output.ids, output.weights, strict=True)):
        item: dict[str, Any] = {"indices": ids.tolist(), "values": weights.tolist()}
        if output.tokens is not None:
            item["tokens"] = output.tokens[n]
        encoded.append(item)
    return encoded


def _f32(rows: Vectors) -> Vectors:
    return np.ascontiguousarray(rows, dtype=np.float32)


def build(
    manifest: Manifest,
    request: EmbedRequest,
    task: PoolingTask,
    rows: list[Row] | Vectors,
    ids: Sequence[Sequence[int]],
    *,
    dimensions: int | None,
    decode: Any,
) -> Output:
    """One task's output for every input of a request, from the engine's rows (dense rows as one array: the
    token-block path's)."""
    kind = manifest.kind
    if task == "embed":
        matrix = rows if isinstance(rows, np.ndarray) else np.stack(pick(rows, graph_output(kind, task)))
        normalize = manifest.normalize if request.normalize is None else request.normalize
        transform = manifest.matryoshka_transform
        return Dense(finish(matrix, dimensions=dimensions, normalize=normalize, transform=transform))
    assert not isinstance(rows, np.ndarray)
    values = pick(rows, graph_output(kind, task))
    if task in ("score", "classify"):  # cross-encoders: one logit row per pair or text, as computed
        return Dense(np.stack(values).astype(np.float32, copy=False))
    if task == "sparse":
        return sparse_output(kind, values, ids, request, manifest.special_token_ids, decode)
    if task == "token_classify":
        return token_weights(values)
    if kind_of(kind).token_vectors == "multi_vector":
        return multi_vector_output(manifest.head_config, values, ids, request)
    return token_output(kind, values, request.normalize)


def is_query(request: EmbedRequest) -> bool:
    """Multi-vector models encode queries (prompt "query": expanded, query skiplist) unlike documents."""
    return request.prompt_name == "query"


def multi_vector_request(config: dict[str, Any], request: EmbedRequest) -> EmbedRequest:
    """Queries are cut to the expansion (or query) length, documents to the document length, as
    sentence-transformers' MultiVectorEncoder does; a smaller `truncate_prompt_tokens` still applies."""
    expansion = config.get("expansion")
    if is_query(request) and expansion and expansion["strategy"] == "fixed":
        limit = expansion["length"]
    elif is_query(request):
        limit = config.get("query_length")
    else:
        limit = config.get("document_length")
    given = request.truncate_prompt_tokens
    if limit is None or (given is not None and given != -1 and given <= limit):
        return request
    return dataclasses.replace(request, truncate_prompt_tokens=int(limit))


def expand_query(config: dict[str, Any], request: EmbedRequest, prepared: Prepared) -> Prepared:
    """ColBERT query expansion: pad each query's ids with the expansion token up to the expansion length."""
    expansion = config.get("expansion")
    if not expansion or not is_query(request):
        return prepared
    items = []
    for item in prepared.items:
        ids = list(item.features["input_ids"])
        extra = max(0, expansion["length"] - len(ids))
        types = [*item.features["token_type_ids"], *[0] * extra]
        items.append(text_input([*ids, *[expansion["token_id"]] * extra], types))
    return dataclasses.replace(prepared, items=items)


def multi_vector_output(
    config: dict[str, Any], rows: list[Vectors], ids: Sequence[Sequence[int]], request: EmbedRequest
) -> TokenVectors:
    """Each input's token vectors, without the skiplist's tokens on the tasks it applies to (documents by
    default); normalized when asked, or by default where the model says so (ColBERT)."""
    task = "query" if is_query(request) else "document"
    skip = np.asarray(config.get("skip_ids") or [], dtype=np.int64) if task in config.get("skip_tasks", []) else None
    normalize = config.get("normalize", False) if request.normalize is None else request.normalize
    out = []
    for row, token_ids in zip(rows, ids, strict=True):
        if skip is not None and len(skip):
            row = row[~np.isin(np.asarray(token_ids, dtype=np.int64), skip)]
        out.append(l2_normalize(row) if normalize else _f32(row))
    return TokenVectors(out)


def also_tasks(request: EmbedRequest) -> tuple[PoolingTask, ...]:
    """The request's tasks in order, its own first, without repeats."""
    return tuple(dict.fromkeys((request.task, *request.also)))

"""Cross-encoders and sequence classifiers (model kind "cross_encoder"): task "score" runs (query, document) pairs,
each tokenized as one sequence as the model's tokenizer does it (runtime/text/pairs.py); task "classify" runs
texts. One `logits` row [num_labels] per input; the activation and labels are applied by the caller
(`Runtime.score`/`rerank`/`classify`, pipeline scoring) from the manifest's head_config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.engines.base import Batch, Engine
from trt_embed.errors import InvalidRequest
from trt_embed.runtime.batching.batch import make_batch
from trt_embed.runtime.routes.base import Job, Route, RouteContext, Staged, WholeJob
from trt_embed.runtime.text.pairs import PairTokenizer
from trt_embed.runtime.types import BatchKey, EmbedRequest, PreparedInput, Row


class PairRoute(Route):
    """Every request to a cross-encoder artifact: pairs to score or texts to classify."""

    name = "pairs"

    def __init__(self, context: RouteContext) -> None:
        self.context = context
        self.manifest = context.manifest
        truncation = str(context.manifest.head_config.get("truncation", "longest_first"))
        tokenizer_file = context.directory / context.manifest.tokenizer.directory / "tokenizer.json"
        self.tokenizer = PairTokenizer.from_file(tokenizer_file, context.manifest.max_seq_length, truncation)  # type: ignore[arg-type]

    @classmethod
    def build(cls, context: RouteContext) -> PairRoute | None:
        return cls(context) if context.kind.pairs else None

    def serves(self, request: EmbedRequest) -> bool:
        return True

    def check(self, request: EmbedRequest) -> int:
        if request.task == "score":
            return len(_checked_pairs(request.pairs))
        if request.pairs is not None:
            raise InvalidRequest("pairs are scored with the score task, not classify", "task")
        texts = request.inputs
        if texts is None or isinstance(texts, str) or len(texts) == 0:
            raise InvalidRequest("classify needs a non-empty list of texts", "input")
        for n, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequest(f"input[{n}] must be a string to classify, got {type(text).__name__}", "input")
        self.context.limits.check_sizes(texts)
        return len(texts)

    def start(self, request: EmbedRequest, variant: str) -> Job:
        return PairJob(self, request, variant)

    def encode(self, request: EmbedRequest) -> dict[str, np.ndarray]:
        """The padded input_ids, attention_mask and token_type_ids of the request's pairs or texts."""
        if request.task == "score":
            return self.tokenizer.encode_pairs(list(request.pairs or []))
        encodings = self.tokenizer.tokenizer.encode_batch(list(request.inputs or []))
        pairs_of_one = [(e.ids, e.type_ids) for e in encodings]
        width = max(len(ids) for ids, _ in pairs_of_one)
        ids = np.full((len(pairs_of_one), width), self.tokenizer.pad_id, dtype=np.int64)
        types, mask = np.zeros_like(ids), np.zeros_like(ids)
        for n, (row, type_row) in enumerate(pairs_of_one):
            ids[n, : len(row)], types[n, : len(row)], mask[n, : len(row)] = row, type_row, 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def batch(self, engine: Engine, key: BatchKey, items: Sequence[PreparedInput]) -> Batch:
        info = self.manifest.tokenizer
        return make_batch(
            key, items, layout=engine.layout, pad_id=info.pad_token_id, padding_side="right", pooling_mask=False
        )

    def rows(
        self, key: BatchKey, items: Sequence[PreparedInput], batch: Batch, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> list[Row]:
        return list(outputs["logits"])


def _checked_pairs(pairs: Sequence[tuple[str, str]] | None) -> Sequence[tuple[str, str]]:
    if pairs is None or len(pairs) == 0:
        raise InvalidRequest("score needs at least one (query, document) pair", "documents")
    for n, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(side, str) for side in pair):
            raise InvalidRequest(f"documents[{n}] must be a string (a text pair is two strings)", "documents")
    return pairs


class PairJob(WholeJob):
    """A request in one piece: its pairs (or texts) tokenized, queued as single inputs, rows in request order."""

    route: PairRoute

    def prepare(self, chunk: None) -> Staged:
        arrays = self.route.encode(self.request)
        lengths = arrays["attention_mask"].sum(axis=1)
        items = [
            PreparedInput({"input_ids": ids[:n].tolist(), "token_type_ids": types[:n].tolist()}, int(n))
            for ids, types, n in zip(arrays["input_ids"], arrays["token_type_ids"], lengths, strict=True)
        ]
        self.ids = [list(item.features["input_ids"]) for item in items]
        key = BatchKey(self.variant, "logits", 0, route=self.route.name)
        return Staged([(key, items)], int(lengths.sum()))

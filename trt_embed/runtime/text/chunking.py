"""Chunked processing of over-long inputs (the reference's `enable_chunked_processing` / `max_embed_len`).

An input longer than the model's limit is cut into pieces within it, each piece is pooled by the model's own
pooling (CLS, mean, last, ...), and the pieces' pooled vectors are combined by a mean weighted by their token
counts, as the reference does whatever the model's pooling. For mean pooling that is the mean over every token of
the input. Matryoshka slicing and normalization then apply once, to the combined vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from trt_embed.errors import InputTooLong, InvalidRequest
from trt_embed.runtime.text.tokenizer import TextTokenizer, Tokenized, too_long
from trt_embed.runtime.types import PreparedInput, Vectors, text_input


@dataclasses.dataclass(frozen=True)
class Chunking:
    """Whether over-long `embed` inputs are chunked, and the longest input accepted then (tokens; None: any)."""

    enabled: bool = False
    max_embed_len: int | None = None

    def check(self, length: int) -> None:
        if self.max_embed_len is not None and length > self.max_embed_len:
            raise InputTooLong(too_long(self.max_embed_len, length, what="maximum embedding input"), "input")


@dataclasses.dataclass
class Chunked:
    """Prepared pieces of a request's inputs: `counts[i]` pieces belong to input i, in order."""

    items: list[PreparedInput]
    counts: list[int]


def chunk_texts(tokenizer: TextTokenizer, texts: Sequence[str], prompt: str | None, chunking: Chunking) -> Chunked:
    """Texts tokenized whole, then cut into pieces within the model's limit (special tokens on every piece)."""
    items: list[PreparedInput] = []
    counts: list[int] = []
    specials = tokenizer.num_special_tokens
    for n, pieces in enumerate(tokenizer.encode_chunks(texts, prompt)):
        length = sum(len(p.ids) for p in pieces) - specials * (len(pieces) - 1)
        chunking.check(length)
        if not pieces[0].ids:
            raise InvalidRequest(f"input[{n}] has no tokens", "input")
        items.extend(text_input(p.ids, p.type_ids) for p in pieces)
        counts.append(len(pieces))
    return Chunked(items, counts)


def chunk_ids(tokens: Tokenized, limit: int, chunking: Chunking) -> Chunked:
    """Token-id inputs cut into consecutive pieces of at most `limit` ids, as given (no tokens are added)."""
    items: list[PreparedInput] = []
    counts: list[int] = []
    for ids, types in zip(tokens.ids, tokens.type_ids, strict=True):
        chunking.check(len(ids))
        starts = range(0, len(ids), limit)
        items.extend(text_input(ids[s : s + limit], types[s : s + limit]) for s in starts)
        counts.append(len(starts))
    return Chunked(items, counts)


def combine(rows: Sequence[Vectors], counts: Sequence[int], weights: Sequence[int]) -> list[Vectors]:
    """Pooled pieces back to one vector per input: the mean of its pieces weighted by their token counts."""
    out: list[Vectors] = []
    start = 0
    for count in counts:
        block = np.asarray(rows[start : start + count], dtype=np.float32)
        w = np.asarray(weights[start : start + count], dtype=np.float32)
        out.append((w @ block / w.sum()).astype(np.float32) if count > 1 else block[0])
        start += count
    return out

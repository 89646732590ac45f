"""Request-level types and helpers of the runtime: input kinds, a prepared request, score pairing, masks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.postprocess import Vectors
from trt_embed.runtime.scheduler import BatchKey
from trt_embed.runtime.tokenizer import Tokenized, Truncate

Inputs = Sequence[str] | Sequence[Sequence[int]]
PoolingTask = Literal["embed", "token_embed"]
OUTPUTS: dict[str, str] = {"embed": "sentence_embedding", "token_embed": "token_embeddings"}


@dataclasses.dataclass
class Prepared:
    """A request after validation and tokenization, ready for the scheduler."""

    key: BatchKey
    tokens: Tokenized

    @property
    def num_tokens(self) -> int:
        return sum(self.tokens.lengths)


def pair_inputs(first: str | Sequence[str], second: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """vLLM's score pairing rules; returns the two sides with the first side of length 1 or len(second)."""
    left = [first] if isinstance(first, str) else list(first)
    right = [second] if isinstance(second, str) else list(second)
    if not left or not right:
        raise InvalidRequest("both sides of a score request need at least one text", "text_1")
    if len(left) != 1 and len(left) != len(right):
        raise InvalidRequest(
            f"text_1 has {len(left)} items and text_2 has {len(right)}: give one text_1 (1:N) or as many as "
            "text_2 (N:N pairwise)",
            "text_1",
        )
    return left, right


def cosine_pairs(a: Vectors, b: Vectors) -> Vectors:
    """Row-wise dot products of normalized vectors; a single row on the left is paired with every right row."""
    if len(a) == 1:
        a = np.repeat(a, len(b), axis=0)
    scores: Vectors = (a * b).sum(axis=-1).astype(np.float32)
    return scores


def exclude_leading(mask: np.ndarray, skip: int) -> np.ndarray:
    """Zero the first `skip` real tokens of each row (after any left padding)."""
    if skip <= 0:
        return mask
    first = mask.argmax(axis=1)
    positions = np.arange(mask.shape[1])[None, :]
    out = mask.copy()
    out[positions < (first + skip)[:, None]] = 0
    return out


def token_id_inputs(
    inputs: Inputs, truncate: Truncate, limit: int, vocab: int, check_length: Callable[[int, int, int], None]
) -> Tokenized:
    """Token-id inputs, used as given after checking them: integer ids inside the vocabulary, none empty,
    truncated to `limit` (or refused through `check_length` when `truncate` is "none")."""
    ids: list[list[int]] = []
    for n, row in enumerate(inputs):
        if not isinstance(row, Sequence) or not all(isinstance(t, int) and not isinstance(t, bool) for t in row):
            raise InvalidRequest(f"input[{n}] must be a string or a list of integer token ids", "input")
        tokens = [int(t) for t in row]  # type: ignore[call-overload]
        if not tokens:
            raise InvalidRequest(f"input[{n}] is an empty token list", "input")
        if min(tokens) < 0 or max(tokens) >= vocab:
            raise InvalidRequest(f"input[{n}] has token ids outside the vocabulary [0, {vocab})", "input")
        if len(tokens) > limit:
            if truncate == "none":
                check_length(n, len(tokens), limit)
            tokens = tokens[:limit] if truncate == "end" else tokens[-limit:]
        ids.append(tokens)
    return Tokenized(ids=ids, type_ids=[[0] * len(t) for t in ids])


def token_limit(truncate_prompt_tokens: int | None, max_seq_length: int) -> int | None:
    """vLLM's `truncate_prompt_tokens`: None (the model's limit applies), -1 (the model's limit) or 1..limit."""
    if truncate_prompt_tokens is None:
        return None
    if truncate_prompt_tokens == -1:
        return max_seq_length
    if isinstance(truncate_prompt_tokens, bool) or not 1 <= truncate_prompt_tokens <= max_seq_length:
        raise InvalidRequest(
            f"truncate_prompt_tokens must be -1 or between 1 and {max_seq_length}, got {truncate_prompt_tokens}",
            "truncate_prompt_tokens",
        )
    return truncate_prompt_tokens

"""All scoring in one place: vLLM's pairing rules and similarity of paired rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.image_sources import is_image
from trt_embed.runtime.types import Vectors


def pair_inputs(first: str | Sequence[Any], second: str | Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """vLLM's score pairing rules; returns the two sides with the first side of length 1 or len(second)."""
    left = [first] if isinstance(first, str) or is_image(first) else list(first)  # an image: CLIP/SigLIP
    right = [second] if isinstance(second, str) or is_image(second) else list(second)
    if not left or not right:
        raise InvalidRequest("both sides of a score request need at least one text", "text_1")
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

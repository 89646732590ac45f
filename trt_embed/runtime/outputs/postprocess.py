"""Backend-neutral post-processing: Matryoshka slicing, then L2 normalization."""

from __future__ import annotations

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
from trt_embed.runtime.types import Vectors


def check_dimensions(manifest: Manifest, dimensions: int | None) -> int | None:
    """Validate a requested output dimension against the manifest; None means full size."""
    if dimensions is None or dimensions == manifest.embedding_dim:
        return None
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        raise InvalidRequest(f"dimensions must be an integer, got {dimensions!r}", "dimensions")
    allowed = manifest.matryoshka_dimensions
    if allowed is None:
        raise InvalidRequest(
            f"this model does not support Matryoshka dimensions (its output has {manifest.embedding_dim}); "
            "omit `dimensions`, or export with `--matryoshka` if the model was trained for it",
            "dimensions",
        )
    if not 1 <= dimensions <= manifest.embedding_dim:
        raise InvalidRequest(
            f"dimensions must be between 1 and {manifest.embedding_dim}, got {dimensions}", "dimensions"
        )
    if allowed and dimensions not in allowed:
        raise InvalidRequest(
            f"dimensions {dimensions} is not one this model supports: {', '.join(map(str, allowed))}",
            "dimensions",
        )
    return dimensions


def l2_normalize(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    normalized: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalized


MATRYOSHKA_TRANSFORMS = ("layer_norm",)


def layer_norm(vectors: Vectors, eps: float = 1e-5) -> Vectors:
    """`F.layer_norm(x, (D,))` without affine parameters: nomic-embed-text-v1.5's step before slicing."""
    centered = vectors - vectors.mean(axis=-1, keepdims=True)
    scaled: Vectors = (centered / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + eps)).astype(np.float32)
    return scaled


def finish(vectors: Vectors, *, dimensions: int | None, normalize: bool, transform: str | None = None) -> Vectors:
    """Slice to `dimensions` (already validated), then normalize. A Matryoshka `transform` from the manifest
    applies to the full vector when a smaller dimension is requested."""
    if dimensions is not None:
        if transform == "layer_norm":
            vectors = layer_norm(vectors)
        elif transform is not None:
            raise InvalidRequest(
                f"this artifact asks for Matryoshka transform {transform!r}, which this trt-embed does not know "
                f"(known: {', '.join(MATRYOSHKA_TRANSFORMS)}); upgrade trt-embed or omit `dimensions`",
                "dimensions",
            )
        vectors = vectors[:, :dimensions]
    if normalize:
        return l2_normalize(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)

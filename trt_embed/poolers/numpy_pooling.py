"""Pooling math in NumPy, one function per mode: the runtime fallback and the test oracle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Mask = npt.NDArray[np.integer]


def _first_attended(mask: Mask) -> npt.NDArray[np.int64]:
    return mask.astype(np.int32).argmax(axis=1).astype(np.int64)


def _cls(hidden: Array, mask: Mask) -> Array:
    # The first attended position: index 0 with right padding, the first real token with left padding.
    return hidden[np.arange(hidden.shape[0]), _first_attended(mask)]


def _mean(hidden: Array, mask: Mask) -> Array:
    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def _mean_sqrt_len(hidden: Array, mask: Mask) -> Array:
    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(axis=1) / np.sqrt(np.maximum(m.sum(axis=1), 1e-9))


def _weightedmean(hidden: Array, mask: Mask) -> Array:
    # Position weights count from the first real token, so left padding does not shift them.
    positions = np.arange(1, hidden.shape[1] + 1)[None, :] - _first_attended(mask)[:, None]
    m = (mask * positions)[..., None].astype(hidden.dtype)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def _max(hidden: Array, mask: Mask) -> Array:
    masked = np.where(mask[..., None].astype(bool), hidden, np.float32(-1e9))
    return masked.max(axis=1)


def _last(hidden: Array, mask: Mask) -> Array:
    # Index of the last attended position: correct for left and right padding alike.
    positions = mask.astype(np.int64) * np.arange(mask.shape[1])[None, :]
    last = positions.argmax(axis=1)
    return hidden[np.arange(hidden.shape[0]), last]


POOLING_MODES: dict[str, Callable[[Array, Mask], Array]] = {
    "cls": _cls,
    "mean": _mean,
    "mean_sqrt_len": _mean_sqrt_len,
    "weightedmean": _weightedmean,
    "max": _max,
    "last": _last,
}


def pool(mode: str, hidden: Array, mask: Mask) -> Array:
    """Pool token states [B, S, H] with an attention mask [B, S] into [B, H]."""
    try:
        fn = POOLING_MODES[mode]
    except KeyError:
        raise ValueError(f"unknown pooling mode {mode!r}; valid: {', '.join(POOLING_MODES)}") from None
    return fn(hidden, mask).astype(np.float32, copy=False)

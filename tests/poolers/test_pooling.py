"""The NumPy pooling oracle and the torch heads agree, for left and right padding."""

from __future__ import annotations

import numpy as np
import pytest

from trt_embed.poolers import POOLING_MODES, pool


def batch(side: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    lengths = [5, 2, 7]
    hidden = rng.standard_normal((3, 7, 4)).astype(np.float32)
    mask = np.zeros((3, 7), dtype=np.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1 if side == "right" else 0
        if side == "left":
            mask[row, 7 - n :] = 1
    return hidden, mask, lengths


@pytest.mark.parametrize("mode", sorted(POOLING_MODES))
@pytest.mark.parametrize("side", ["left", "right"])
def test_torch_head_matches_numpy(mode: str, side: str) -> None:
    torch = pytest.importorskip("torch")
    from trt_embed.poolers.torch_pooling import Pooling

    hidden, mask, _ = batch(side)
    expected = pool(mode, hidden, mask)
    got = Pooling(mode)(torch.from_numpy(hidden), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(POOLING_MODES))
def test_padding_side_does_not_matter(mode: str) -> None:
    """Each row pooled alone (no padding) equals the padded batch, whichever side is padded."""
    for side in ("left", "right"):
        hidden, mask, lengths = batch(side)
        pooled = pool(mode, hidden, mask)
        for row, n in enumerate(lengths):
            cols = slice(0, n) if side == "right" else slice(7 - n, 7)
            alone = pool(mode, hidden[row : row + 1, cols], np.ones((1, n), dtype=np.int64))
            np.testing.assert_allclose(pooled[row], alone[0], atol=1e-6)


def test_definitions() -> None:
    hidden = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    mask = np.array([[1, 1, 1, 0]])
    np.testing.assert_allclose(pool("cls", hidden, mask), [[0, 1, 2]])
    np.testing.assert_allclose(pool("last", hidden, mask), [[6, 7, 8]])
    np.testing.assert_allclose(pool("mean", hidden, mask), [[3, 4, 5]])
    np.testing.assert_allclose(pool("max", hidden, mask), [[6, 7, 8]])
    np.testing.assert_allclose(pool("mean_sqrt_len", hidden, mask), [[9 / 3**0.5, 12 / 3**0.5, 15 / 3**0.5]])
    np.testing.assert_allclose(
        pool("weightedmean", hidden, mask), [[(0 + 6 + 18) / 6, (1 + 8 + 21) / 6, (2 + 10 + 24) / 6]]
    )
    with pytest.raises(ValueError, match="valid: "):
        pool("median", hidden, mask)

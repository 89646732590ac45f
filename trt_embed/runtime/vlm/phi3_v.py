"""Phi-3-V's HD transform (Phi3VImageProcessor), with Pillow and NumPy only.

An image (portrait ones transposed first) is scaled to `scale * 336` wide, `scale` the largest with
`scale * ceil(scale / aspect) <= num_crops`, by Pillow's bilinear filter, padded with white top and bottom to a
multiple of 336, transposed back, normalized with CLIP's mean/std in float32 and cut into 336 x 336 sub-crops (row
major). The global crop is that normalized image shrunk to 336 x 336 by PyTorch's bicubic `interpolate` (no
antialias, a = -0.75, edge pixels repeated), reproduced here. Crops go out global first; the original's zero crops
(padding to `num_crops + 1`) are left out: the model discards them.

An image of h x w crops is `(h*w + 1) * 144 + 1 + (h + 1) * 12` tokens: the sub-crop grid (12 rows of 12 merged
patches per crop, each grid row ended by a line separator), the global separator, and the global crop's 12 rows of
12, each ended by a line separator. `token_index` says which row of the vision graph's table fills each token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.runtime.images.preprocess import CLIP_MEAN, CLIP_STD, to_rgb
from trt_embed.runtime.vlm.families import Array, ImageInput, ProcessorBase

CROP = 336
MERGED = 12  # merged patches per crop side (24 CLIP patches of 14, merged 2x2)
Float = npt.NDArray[np.float32]


def hd_size(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """(width, height) of the resized image before padding, in the original's arithmetic."""
    long, short = (height, width) if width < height else (width, height)
    ratio = long / short
    scale = 1
    while scale * math.ceil(scale / ratio) <= num_crops:
        scale += 1
    scale -= 1
    new_long = scale * CROP
    new_short = int(new_long / ratio)
    return (new_short, new_long) if width < height else (new_long, new_short)


def padded_size(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """(height, width) of the padded image: what the original reports as `image_sizes`."""
    new_w, new_h = hd_size(width, height, num_crops)
    if width < height:  # padded across the long side's transpose: width becomes the multiple of 336
        return new_h, int(np.ceil(new_w / CROP) * CROP)
    return int(np.ceil(new_h / CROP) * CROP), new_w


def num_image_tokens(height: int, width: int) -> int:
    """Image tokens of a padded image of height x width (multiples of 336)."""
    rows, cols = height // CROP, width // CROP
    return (rows * cols + 1) * MERGED * MERGED + 1 + (rows + 1) * MERGED


def _normalize(rgb: npt.NDArray[np.uint8]) -> Float:
    """[H, W, 3] uint8 -> [3, H, W] float32, as torchvision's ToTensor then Normalize."""
    x = rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(CLIP_STD, dtype=np.float32)[:, None, None]
    return np.asarray((x - mean) / std, dtype=np.float32)


def _cubic_weights(size_in: int, size_out: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Source indices [out, 4] and weights [out, 4] of PyTorch's bicubic (align_corners=False, a = -0.75)."""
    a = -0.75
    scale = np.float32(size_in / size_out)
    real = scale * (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    base = np.floor(real)
    t = (real - base).astype(np.float32)

    def near(x: Float) -> Float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Float) -> Float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1).astype(np.float32)
    index = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, size_in - 1)
    return index, weights


def bicubic(image: Float, height: int, width: int) -> Float:
    """[C, H, W] float32 -> [C, height, width], PyTorch's `interpolate(mode="bicubic")` without antialias."""
    rows, row_w = _cubic_weights(image.shape[1], height)
    cols, col_w = _cubic_weights(image.shape[2], width)
    across = (image[:, :, cols] * col_w[None, None]).sum(-1, dtype=np.float32)  # [C, H, width]
    down = (across[:, rows, :] * row_w[None, :, :, None]).sum(2, dtype=np.float32)  # [C, height, width]
    return np.asarray(down, dtype=np.float32)


def hd_transform(image: Any, num_crops: int) -> Any:
    """A Pillow image -> the resized, white-padded RGB image whose sides are multiples of 336 (HD_transform)."""
    from PIL import Image

    rgb = to_rgb(image)
    transposed = rgb.width < rgb.height
    if transposed:
        rgb = rgb.transpose(Image.Transpose.TRANSPOSE)
    new_w, new_h = hd_size(rgb.width, rgb.height, num_crops)
    resized = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    target = int(np.ceil(new_h / CROP) * CROP)
    top = int((target - new_h) / 2)
    canvas = Image.new("RGB", (new_w, target), (255, 255, 255))
    canvas.paste(resized, (0, top))
    return canvas.transpose(Image.Transpose.TRANSPOSE) if transposed else canvas


def preprocess(image: Any, num_crops: int) -> tuple[Float, tuple[int, int]]:
    """One Pillow image -> (crops [1 + rows*cols, 3, 336, 336], global first; (height, width) padded)."""
    padded = _normalize(np.asarray(hd_transform(image, num_crops), dtype=np.uint8))
    _, height, width = padded.shape
    rows, cols = height // CROP, width // CROP
    sub = padded.reshape(3, rows, CROP, cols, CROP).transpose(1, 3, 0, 2, 4).reshape(-1, 3, CROP, CROP)
    glob = bicubic(padded, CROP, CROP)[None]
    return np.ascontiguousarray(np.concatenate([glob, sub]), dtype=np.float32), (height, width)


def token_index(height: int, width: int, first_crop: int, separators: int) -> npt.NDArray[np.int64]:
    """Rows of the vision table ([crops * 144 + 2]: merged patches crop by crop, then the line and global
    separators at `separators`, `separators + 1`) for one image's tokens; its global crop is crop `first_crop`,
    its sub-crops follow in row-major order."""
    rows, cols = height // CROP, width // CROP
    line, glb = separators, separators + 1
    r = np.arange(rows * MERGED)[:, None]
    c = np.arange(cols * MERGED)[None, :]
    crop = first_crop + 1 + (r // MERGED) * cols + c // MERGED
    grid = crop * MERGED * MERGED + (r % MERGED) * MERGED + c % MERGED
    sub = np.concatenate([grid, np.full((rows * MERGED, 1), line)], axis=1).reshape(-1)
    g = first_crop * MERGED * MERGED + np.arange(MERGED * MERGED).reshape(MERGED, MERGED)
    glob = np.concatenate([g, np.full((MERGED, 1), line)], axis=1).reshape(-1)
    return np.concatenate([sub, [glb], glob]).astype(np.int64)


class Phi3VProcessor(ProcessorBase):
    """HD crops and their token layout for Phi-3-V (vision inputs `pixel_values` [crops, 3, 336, 336] and
    `token_index` [tokens]: rows of the graph's table, the separators after all crops' patches)."""

    def image(self, image: Any) -> ImageInput:
        crops, (height, width) = preprocess(image, int(self.recipe["num_crops"]))
        local = token_index(height, width, 0, -2)  # separators as -2 (line) and -1 (global) until the call is known
        return ImageInput({"pixel_values": crops, "token_index": local}, tokens=len(local), grid=(height, width))

    def placeholder_image(self) -> Any:
        from PIL import Image

        return Image.new("RGB", (CROP, CROP), (255, 255, 255))

    def vision_feeds(self, images: Sequence[ImageInput]) -> dict[str, Array]:
        crops = [len(i.feeds["pixel_values"]) for i in images]
        separators = sum(crops) * MERGED * MERGED
        offsets = np.cumsum([0, *crops[:-1]]) * MERGED * MERGED
        index = [
            np.where(
                i.feeds["token_index"] >= 0, i.feeds["token_index"] + offset, separators + 2 + i.feeds["token_index"]
            )
            for i, offset in zip(images, offsets, strict=True)
        ]
        pixels = np.concatenate([i.feeds["pixel_values"] for i in images])
        return {"pixel_values": np.ascontiguousarray(pixels), "token_index": np.concatenate(index).astype(np.int64)}

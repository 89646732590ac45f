"""Qwen2-VL's image processing and multimodal RoPE in NumPy and Pillow (the runtime half of the `qwen2_vl` family).

An image is resized to a multiple of patch x merge pixels whose area lies within [min_pixels, max_pixels]
(`smart_resize`, aspect ratio kept), rescaled and normalized, and cut into patches laid out as the vision tower
reads them: merge x merge windows of patches together, each patch repeated over the temporal patch size (a still
image is two equal frames), flattened to C*T*P*P values. The vision graph takes `pixel_values` [P, C*T*P*P], each
patch's (row, column) `vision_position_ids` [P, 2] (its rotary position) and `image_index` [P] (attention stays
inside one image); it returns (P / merge^2) merged features per image. Decoder positions are transformers'
`get_rope_index`: text tokens count up on all three rows; an image's tokens take (t, row, column) offsets from where
it starts, and the text after it resumes at start + max(rows, columns).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.images.preprocess import CLIP_MEAN, CLIP_STD
from trt_embed.runtime.vlm.families import Array, ImageInput, ProcessorBase

MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) divisible by `factor`, area within [min_pixels, max_pixels], aspect ratio kept."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InvalidRequest(
            f"an image of {width}x{height} pixels is too elongated: the aspect ratio must be below {MAX_ASPECT_RATIO}",
            "input",
        )
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def recipe_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The processor recipe from a checkpoint's `preprocessor_config.json` (Qwen2VLImageProcessor keys, with its
    defaults for keys the file leaves out)."""
    size = config.get("size") or {}
    return {
        "patch_size": int(config.get("patch_size", 14)),
        "temporal_patch_size": int(config.get("temporal_patch_size", 2)),
        "merge_size": int(config.get("merge_size", 2)),
        "min_pixels": int(config.get("min_pixels") or size.get("shortest_edge") or 56 * 56),
        "max_pixels": int(config.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 1280),
        "resample": int(config.get("resample", 3)),
        "rescale_factor": float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0,
        "mean": list(config.get("image_mean", CLIP_MEAN)) if config.get("do_normalize", True) else [0.0] * 3,
        "std": list(config.get("image_std", CLIP_STD)) if config.get("do_normalize", True) else [1.0] * 3,
    }


def patch_positions(grid_h: int, grid_w: int, merge: int) -> Array:
    """(row, column) of each patch in the merge-window order of the flattened patches: [grid_h * grid_w, 2]."""
    grid = np.stack(np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij"), axis=-1)  # [h, w, 2]
    windows = grid.reshape(grid_h // merge, merge, grid_w // merge, merge, 2).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(windows.reshape(-1, 2), dtype=np.int64)


class Qwen2VLProcessor(ProcessorBase):
    """Dynamic-resolution images and 3D positions for Qwen2-VL (DSE)."""

    def __init__(self, recipe: Mapping[str, Any], arrays: Mapping[str, Array]) -> None:
        super().__init__(recipe, arrays)
        self.patch = int(recipe["patch_size"])
        self.merge = int(recipe["merge_size"])
        self.temporal = int(recipe["temporal_patch_size"])
        self.factor = self.patch * self.merge
        self.mean = np.asarray(recipe["mean"], dtype=np.float32)[:, None, None]
        self.std = np.asarray(recipe["std"], dtype=np.float32)[:, None, None]

    def size_of(self, height: int, width: int) -> tuple[int, int]:
        r = self.recipe
        return smart_resize(height, width, self.factor, int(r["min_pixels"]), int(r["max_pixels"]))

    def placeholder_image(self) -> Any:
        from PIL import Image

        height, width = self.size_of(1, 1)
        return Image.new("RGB", (width, height))

    def pixels(self, image: Any) -> Array:
        """The resized, rescaled, normalized image [3, H, W] float32."""
        height, width = self.size_of(image.height, image.width)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), resample=int(self.recipe["resample"]))
        values = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
        scaled = (values.astype(np.float64) * float(self.recipe["rescale_factor"])).astype(np.float32)
        return np.ascontiguousarray((scaled - self.mean) / self.std, dtype=np.float32)

    def patches(self, pixels: Array) -> tuple[Array, int, int]:
        """[3, H, W] -> flattened patches [grid_h * grid_w, 3 * T * P * P] in merge-window order."""
        channels, height, width = pixels.shape
        p, m = self.patch, self.merge
        grid_h, grid_w = height // p, width // p
        blocks = pixels.reshape(channels, grid_h // m, m, p, grid_w // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)
        frames = np.broadcast_to(blocks[:, :, :, :, :, None], (*blocks.shape[:5], self.temporal, p, p))
        return np.ascontiguousarray(frames.reshape(grid_h * grid_w, -1)), grid_h, grid_w

    def image(self, image: Any) -> ImageInput:
        flat, grid_h, grid_w = self.patches(self.pixels(image))
        feeds = {"pixel_values": flat, "vision_position_ids": patch_positions(grid_h, grid_w, self.merge)}
        return ImageInput(feeds, tokens=grid_h * grid_w // self.merge**2, grid=(1, grid_h, grid_w))

    def vision_feeds(self, images: Sequence[ImageInput]) -> dict[str, Array]:
        feeds = super().vision_feeds(images)
        sizes = [len(i.feeds["pixel_values"]) for i in images]
        feeds["image_index"] = np.repeat(np.arange(len(images), dtype=np.int64), sizes)
        return feeds

    def positions(self, ids: Array, images: Sequence[ImageInput], image_token_id: int) -> Array:
        out = np.zeros((3, len(ids)), dtype=np.int64)
        pictures = iter(images)
        start = 0  # the next text position
        index = 0
        while index < len(ids):
            if ids[index] != image_token_id:
                out[:, index] = start
                start += 1
                index += 1
                continue
            t, h, w = next(pictures).grid
            rows, cols = h // self.merge, w // self.merge
            grid = np.stack(np.meshgrid(np.arange(t), np.arange(rows), np.arange(cols), indexing="ij"))
            count = t * rows * cols
            out[:, index : index + count] = grid.reshape(3, -1) + start
            start += max(rows, cols)
            index += count
        return out


def interpolation(grid_h: int, grid_w: int, merge: int, side: int) -> tuple[Array, Array]:
    """Qwen3-VL's learned position table (side x side) resampled bilinearly (corners aligned) to an image's patch
    grid, as 4 table rows and weights per patch in the flattened patch order: ([P, 4] int64, [P, 4] float32)."""
    positions = patch_positions(grid_h, grid_w, merge)
    offsets = np.arange(2)

    def axis(index: Array, size: int) -> tuple[Array, Array]:
        source = index.astype(np.float32) * np.float32(side - 1) / np.float32(max(size - 1, 1))
        floor = np.floor(source)
        taps = np.clip(floor.astype(np.int64)[:, None] + offsets, 0, side - 1)
        weights = np.clip(1 - np.abs(source[:, None] - floor[:, None] - offsets), 0, None)
        return taps, weights.astype(np.float32)

    row_taps, row_weights = axis(positions[:, 0], grid_h)
    col_taps, col_weights = axis(positions[:, 1], grid_w)
    indices = (row_taps[:, :, None] * side + col_taps[:, None, :]).reshape(-1, 4)
    weights = (row_weights[:, :, None] * col_weights[:, None, :]).reshape(-1, 4)
    return np.ascontiguousarray(indices), np.ascontiguousarray(weights)


class Qwen3VLProcessor(Qwen2VLProcessor):
    """Qwen3-VL (Qwen3-VL-Embedding): Qwen2-VL's processing and positions, plus each patch's interpolated learned
    position embedding (`pos_indices`, `pos_weights`; the recipe's `position_grid` is the table's side)."""

    def image(self, image: Any) -> ImageInput:
        found = super().image(image)
        _, grid_h, grid_w = found.grid
        indices, weights = interpolation(grid_h, grid_w, self.merge, int(self.recipe["position_grid"]))
        return ImageInput({**found.feeds, "pos_indices": indices, "pos_weights": weights}, found.tokens, found.grid)

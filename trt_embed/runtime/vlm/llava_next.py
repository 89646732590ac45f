"""LLaVA-NeXT's "anyres" images (LlavaNextImageProcessor, LlavaNextProcessor, the model's pack_image_features), with
Pillow and NumPy only: the runtime half of the `llava_next` family.

Of the recipe's resolutions (height, width), the one that keeps the most of the image's pixels once it is scaled
to fit, then wastes the least, wins; the image is resized into it keeping its aspect ratio (Pillow, the recipe's
filter), centred on black padding, and cut into crops of the crop size, row by row. The whole image, resized to
the base size, goes first. Every crop is then rescaled and normalized (CLIP's mean and std).

Each crop gives `grid` x `grid` features (the CLIP patches without CLS, projected). An image's tokens are the base
crop's features, then the crops' features as one feature map (rows x columns of crops) with the padding rows or
columns cut off again (from the original aspect ratio), each row followed by the `image_newline` vector.
`token_index` says which row of the vision graph's table fills each token; -1 is the newline, the table's last row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.runtime.images.preprocess import CLIP_MEAN, CLIP_STD, ImageRecipe, preprocess, to_rgb
from trt_embed.runtime.vlm.families import Array, ImageInput, ProcessorBase

# LlavaNextImageProcessor's class defaults, for keys a preprocessor_config.json leaves out
DEFAULTS: dict[str, Any] = {
    "size": {"shortest_edge": 224},
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "resample": 3,
    "image_mean": list(CLIP_MEAN),
    "image_std": list(CLIP_STD),
    "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
}
Index = npt.NDArray[np.int64]


def best_resolution(height: int, width: int, pinpoints: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(height, width) of the pinpoint that keeps the most pixels of the image scaled into it, then wastes least."""
    best, kept_most, wasted_least = (0, 0), 0, math.inf
    for target_h, target_w in pinpoints:
        scale = min(target_w / width, target_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        wasted = target_w * target_h - kept
        if kept > kept_most or (kept == kept_most and wasted < wasted_least):
            best, kept_most, wasted_least = (int(target_h), int(target_w)), kept, wasted
    return best


def fitted_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """(height, width) of the image resized into target_h x target_w, aspect ratio kept (the side that fits
    exactly, the other rounded up)."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def unpadded(height: int, width: int, rows: int, cols: int) -> tuple[slice, slice]:
    """The rows and columns of a rows x cols feature map that hold the image (not its padding)."""
    if width / height > cols / rows:
        kept = int(round(height * (cols / width), 7))
        pad = (rows - kept) // 2
        return slice(pad, rows - pad), slice(0, cols)
    kept = int(round(width * (rows / height), 7))
    pad = (cols - kept) // 2
    return slice(0, rows), slice(pad, cols - pad)


def token_index(height: int, width: int, crops_high: int, crops_wide: int, grid: int) -> Index:
    """Table rows of one image's tokens (its crops numbered from 0, base first; -1 the newline)."""
    rows, cols = crops_high * grid, crops_wide * grid
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    crop = 1 + (r // grid) * crops_wide + c // grid
    full = crop * grid * grid + (r % grid) * grid + c % grid
    keep_rows, keep_cols = unpadded(height, width, rows, cols)
    kept = full[keep_rows, keep_cols]
    lines = np.concatenate([kept, np.full((kept.shape[0], 1), -1)], axis=1)
    return np.concatenate([np.arange(grid * grid), lines.reshape(-1)]).astype(np.int64)


def recipe_from_configs(config: Mapping[str, Any], processor: Mapping[str, Any]) -> dict[str, Any]:
    """The anyres recipe from a LLaVA-NeXT config.json and its preprocessor_config.json (with the processor's
    defaults)."""
    merged = {**DEFAULTS, **processor}
    size, crop = merged["size"], merged.get("crop_size") or {}
    base = [int(size["height"]), int(size["width"])] if "height" in size else [int(size["shortest_edge"])] * 2
    vision = config.get("vision_config") or {}
    return {
        "pinpoints": [[int(h), int(w)] for h, w in merged["image_grid_pinpoints"]],
        "crop": int(crop.get("height") or base[0]),  # the crops are square, of the crop height
        "base": base,
        "grid": int(vision.get("image_size", 336)) // int(vision.get("patch_size", 14)),
        "pixels": ImageRecipe.from_processor_config(processor, DEFAULTS).to_dict(),
    }


class LlavaNextProcessor(ProcessorBase):
    """Anyres crops and their token layout (vision inputs `pixel_values` [crops, 3, S, S] and `token_index`)."""

    def __init__(self, recipe: Mapping[str, Any], arrays: Mapping[str, Array]) -> None:
        super().__init__(recipe, arrays)
        self.pinpoints = [tuple(p) for p in recipe["pinpoints"]]
        self.crop = int(recipe["crop"])
        self.base = (int(recipe["base"][0]), int(recipe["base"][1]))
        self.grid = int(recipe["grid"])
        self.pixels = ImageRecipe.from_dict(recipe["pixels"])

    def crops(self, image: Any) -> tuple[list[Any], tuple[int, int]]:
        """The Pillow crops of one RGB image (base first) and the (height, width) of the resolution chosen."""
        from PIL import Image

        target_h, target_w = best_resolution(image.height, image.width, self.pinpoints)
        new_h, new_w = fitted_size(image.height, image.width, target_h, target_w)
        canvas = Image.new("RGB", (target_w, target_h))
        canvas.paste(
            image.resize((new_w, new_h), self.pixels.resample), ((target_w - new_w) // 2, (target_h - new_h) // 2)
        )
        side = self.crop
        tiles = [
            canvas.crop((x, y, x + side, y + side)) for y in range(0, target_h, side) for x in range(0, target_w, side)
        ]
        base = image.resize((self.base[1], self.base[0]), self.pixels.resample)
        return [base, *tiles], (target_h, target_w)

    def image(self, image: Any) -> ImageInput:
        rgb = to_rgb(image)
        crops, (target_h, target_w) = self.crops(rgb)
        pixels = np.ascontiguousarray(np.stack([preprocess(c, self.pixels) for c in crops]), dtype=np.float32)
        index = token_index(rgb.height, rgb.width, target_h // self.crop, target_w // self.crop, self.grid)
        return ImageInput(
            {"pixel_values": pixels, "token_index": index}, tokens=len(index), grid=(rgb.height, rgb.width)
        )

    def placeholder_image(self) -> Any:
        from PIL import Image

        return Image.new("RGB", (self.crop, self.crop))

    def vision_feeds(self, images: Sequence[ImageInput]) -> dict[str, Array]:
        """Pixels of all images' crops; each image's token rows moved past the crops before it, and -1 to the
        newline row after all crops' features."""
        per_crop = self.grid * self.grid
        crops = [len(i.feeds["pixel_values"]) for i in images]
        newline = sum(crops) * per_crop
        offsets = np.cumsum([0, *crops[:-1]]) * per_crop
        index = [
            np.where(i.feeds["token_index"] >= 0, i.feeds["token_index"] + offset, newline)
            for i, offset in zip(images, offsets, strict=True)
        ]
        pixels = np.concatenate([i.feeds["pixel_values"] for i in images])
        return {"pixel_values": np.ascontiguousarray(pixels), "token_index": np.concatenate(index).astype(np.int64)}

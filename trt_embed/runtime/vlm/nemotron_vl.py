"""Llama-Nemotron-VL's dynamic tiling (InternVL style), with Pillow and NumPy only: the runtime half of the
`nemotron_vl` family.

Among the tile grids (columns x rows) with 1..max_tiles tiles, sorted by tile count, the first one maximizing
`min(grid area / image area, 0.6) * min(r / a, a / r)` (r the grid's aspect ratio, a the image's) wins; the image is
resized to that grid of S x S tiles (Pillow bicubic) and cut row by row; with more than one tile a thumbnail of the
whole image at S x S follows. Tiles are rescaled and normalized (SigLIP: mean = std = 0.5). Each tile becomes
(S / patch / 2)^2 tokens after the pixel shuffle. The original processor resizes with torchvision's antialiased
bicubic on tensors; Pillow's bicubic is vLLM's choice and differs from it by a few grey levels on edges (the
test records how much).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.runtime.vlm.families import Array, ImageInput, ProcessorBase

SIGLIP_MEAN = (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
AREA_ENOUGH = 0.6


def grids(max_tiles: int, min_tiles: int = 1) -> list[tuple[int, int]]:
    """(columns, rows) with min..max tiles, by tile count (ties in the original's set order)."""
    found = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(found, key=lambda g: g[0] * g[1])


def best_grid(width: int, height: int, size: int, choices: list[tuple[int, int]]) -> tuple[int, int]:
    aspect = width / height
    best, score = (1, 1), float("-inf")
    for cols, rows in choices:
        target = cols / rows
        value = min(cols * rows * size * size / (width * height), AREA_ENOUGH) * min(target / aspect, aspect / target)
        if value > score:
            best, score = (cols, rows), value
    return best


def recipe_from_configs(config: Mapping[str, Any], processor: Mapping[str, Any]) -> dict[str, Any]:
    """The tiling recipe from the checkpoint's config.json and processor_config.json (the processor's defaults)."""
    vision = config.get("vision_config") or {}
    size = int(processor.get("image_size") or config.get("force_image_size") or vision.get("image_size", 512))
    patch = int(vision.get("patch_size", 16))
    ratio = float(config.get("downsample_ratio", 0.5))
    imagenet = processor.get("norm_type", "siglip") == "imagenet"
    return {
        "image_size": size,
        "max_tiles": int(processor.get("max_input_tiles", 6)),
        "use_thumbnail": bool(processor.get("use_thumbnail", True)),
        "dynamic": bool(processor.get("dynamic_image_size", True)),
        "tokens_per_tile": int((size // patch) ** 2 * ratio**2),
        "mean": list(IMAGENET_MEAN if imagenet else SIGLIP_MEAN),
        "std": list(IMAGENET_STD if imagenet else SIGLIP_MEAN),
    }


class NemotronVLProcessor(ProcessorBase):
    """Tiles and token counts for Llama-Nemotron-VL (vision input `pixel_values` [tiles, 3, S, S])."""

    def __init__(self, recipe: Mapping[str, Any], arrays: Mapping[str, Array]) -> None:
        super().__init__(recipe, arrays)
        self.size = int(recipe["image_size"])
        self.choices = grids(int(recipe["max_tiles"]))
        self.mean = np.asarray(recipe["mean"], dtype=np.float32)[:, None, None]
        self.std = np.asarray(recipe["std"], dtype=np.float32)[:, None, None]

    def tiles(self, image: Any) -> list[Any]:
        """The Pillow tiles of one RGB image, thumbnail last."""
        from PIL import Image

        size, bicubic = self.size, Image.Resampling.BICUBIC
        if not self.recipe["dynamic"]:
            return [image.resize((size, size), bicubic)]
        cols, rows = best_grid(image.width, image.height, size, self.choices)
        resized = image.resize((cols * size, rows * size), bicubic)
        out = [
            resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size)) for r in range(rows) for c in range(cols)
        ]
        if self.recipe["use_thumbnail"] and len(out) > 1:
            out.append(image.resize((size, size), bicubic))
        return out

    def pixels(self, tile: Any) -> npt.NDArray[np.float32]:
        values = np.asarray(tile, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
        return np.asarray((values - self.mean) / self.std, dtype=np.float32)

    def image(self, image: Any) -> ImageInput:
        from trt_embed.runtime.images.preprocess import to_rgb

        tiles = self.tiles(to_rgb(image))
        stacked = np.ascontiguousarray(np.stack([self.pixels(t) for t in tiles]), dtype=np.float32)
        return ImageInput({"pixel_values": stacked}, tokens=len(tiles) * int(self.recipe["tokens_per_tile"]))

    def placeholder_image(self) -> Any:
        from PIL import Image

        return Image.new("RGB", (self.size, self.size))

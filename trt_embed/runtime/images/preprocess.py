"""Image preprocessing for two-tower models (CLIP, SigLIP, SigLIP 2 NaFlex), with Pillow and NumPy only.

The recipe is recorded in the manifest at export (from the checkpoint's `preprocessor_config.json`) and reproduces
the HF image processors' PIL path step by step: convert to RGB (alpha composited onto white), resize (shortest
edge kept in proportion, to an exact height x width, or NaFlex's aspect-kept size of at most N patches) with the
recorded Pillow filter, center crop, rescale in float64 then float32, normalize with float32 mean/std (NaFlex:
then cut into patches). Before that, images are made plain 8-bit RGB-able: EXIF orientation applied (as
`transformers.image_utils.load_image` does), 16-bit and 32-bit grayscale scaled to 8 bits (Pillow's own
conversion would clip them), CMYK, palette and grayscale converted by Pillow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.errors import InvalidRequest

Pixels = npt.NDArray[np.float32]  # [3, H, W]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class ImageRecipe:
    """How one image becomes `pixel_values` [3, H, W]."""

    resize: str  # "shortest_edge" (aspect ratio kept, then cropped) | "exact" (height x width) | "max_patches"
    size: tuple[int, int]  # shortest_edge: (edge, edge); exact: (height, width); max_patches: (patch, patch)
    resample: int  # Pillow filter number (3 = BICUBIC, 2 = BILINEAR)
    crop: tuple[int, int] | None  # center crop (height, width), or None
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    patches: tuple[int, int] | None = None  # max_patches (SigLIP 2 NaFlex): (patch size, max patches per image)

    @property
    def output_size(self) -> tuple[int, int]:
        return self.crop if self.crop is not None else self.size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageRecipe:
        crop = data.get("crop")
        return cls(
            resize=str(data["resize"]),
            size=_pair(data["size"]),
            resample=int(data["resample"]),
            crop=None if crop is None else _pair(crop),
            rescale_factor=float(data["rescale_factor"]),
            mean=_triple(data["mean"]),
            std=_triple(data["std"]),
            patches=None if data.get("patches") is None else _pair(data["patches"]),
        )

    @classmethod
    def from_processor_config(cls, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> ImageRecipe:
        """The recipe of an HF `preprocessor_config.json` (CLIPImageProcessor / SiglipImageProcessor /
        Siglip2ImageProcessor keys), with the processor class's `defaults` for keys the file leaves out."""
        merged = {**defaults, **config}
        size = merged.get("size") or {}
        if isinstance(size, int):
            size = {"shortest_edge": size}
        patches = None
        if merged.get("max_num_patches"):
            patch = int(merged["patch_size"])
            resize, dims, patches = "max_patches", (patch, patch), (patch, int(merged["max_num_patches"]))
        elif "shortest_edge" in size:
            resize, dims = "shortest_edge", (int(size["shortest_edge"]),) * 2
        else:
            resize, dims = "exact", (int(size["height"]), int(size["width"]))
        crop = None
        if merged.get("do_center_crop"):
            crop_size = merged.get("crop_size") or size
            crop = (
                (int(crop_size), int(crop_size))
                if isinstance(crop_size, int)
                else (int(crop_size["height"]), int(crop_size["width"]))
            )
        return cls(
            resize=resize,
            size=(int(dims[0]), int(dims[1])),
            resample=int(merged.get("resample", 3)),
            crop=crop,
            rescale_factor=float(merged.get("rescale_factor", 1 / 255)) if merged.get("do_rescale", True) else 1.0,
            mean=_triple(merged["image_mean"]) if merged.get("do_normalize", True) else (0.0, 0.0, 0.0),
            std=_triple(merged["image_std"]) if merged.get("do_normalize", True) else (1.0, 1.0, 1.0),
            patches=patches,
        )


def _pair(value: Any) -> tuple[int, int]:
    a, b = value
    return int(a), int(b)


def _triple(value: Any) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3
    a, b, c = value
    return float(a), float(b), float(c)


def to_rgb(image: Any) -> Any:
    """A Pillow image as 8-bit RGB: EXIF orientation applied, alpha (or a transparent palette colour)
    composited onto white, 16/32-bit and float grayscale scaled to 0..255, CMYK/YCbCr/LAB/palette converted."""
    from PIL import Image, ImageOps

    if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation (a copy only when there is one to apply)
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(wide / top * 255.0), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        flat = np.asarray(image, dtype=np.float64)
        scale = 255.0 if flat.max(initial=0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(flat * scale), 0, 255).astype(np.uint8), "L")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def from_array(array: Any) -> Any:
    """A NumPy image (uint8 or uint16, [H, W], [H, W, 3|4] or channels-first [3|4, H, W]) as a Pillow image."""
    from PIL import Image

    data = np.asarray(array)
    if data.ndim == 3 and data.shape[0] in (1, 3, 4) and data.shape[-1] not in (1, 3, 4):
        data = np.moveaxis(data, 0, -1)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise InvalidRequest(
            f"an image array must be [H, W], [H, W, 3|4] or [3|4, H, W], got shape {list(data.shape)}", "images"
        )
    if data.dtype == np.uint16:
        data = np.rint(data.astype(np.float64) / 257.0).astype(np.uint8)
    elif np.issubdtype(data.dtype, np.floating) and data.size and float(np.nanmax(data)) <= 1.0:
        data = np.clip(np.rint(np.nan_to_num(data) * 255.0), 0, 255).astype(np.uint8)
    elif data.dtype != np.uint8:
        raise InvalidRequest(f"an image array must be uint8, uint16 or float in [0, 1], got {data.dtype}", "images")
    if min(data.shape[:2]) < 1:
        raise InvalidRequest(f"an image array has no pixels (shape {list(data.shape)})", "images")
    return Image.fromarray(np.ascontiguousarray(data))


def resized_size(height: int, width: int, recipe: ImageRecipe) -> tuple[int, int]:
    """(height, width) after the resize step: HF's `get_resize_output_image_size(default_to_square=False)`."""
    if recipe.resize == "exact":
        return recipe.size
    if recipe.resize == "max_patches" and recipe.patches is not None:
        return max_patches_size(height, width, *recipe.patches)
    edge = recipe.size[0]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (new_long, edge) if width <= height else (edge, new_long)


def max_patches_size(height: int, width: int, patch: int, max_patches: int) -> tuple[int, int]:
    """(height, width) of NaFlex's resize: both multiples of `patch` (at least one patch), the aspect ratio kept
    as closely as that allows, as many patches as fit in `max_patches`. The same bisection over the scale as
    transformers' `get_image_size_for_max_num_patches` (eps 1e-5), so that the sizes are equal."""

    def scaled(scale: float, side: int) -> int:
        return max(patch, math.ceil(side * scale / patch) * patch)

    eps = 1e-5
    low, high = eps / 10, 100.0
    while high - low >= eps:
        middle = (low + high) / 2
        if (scaled(middle, height) / patch) * (scaled(middle, width) / patch) <= max_patches:
            low = middle
        else:
            high = middle
    return scaled(low, height), scaled(low, width)


def center_crop(pixels: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """Center crop [C, H, W] to height x width, zero-padding a side that is too small (as HF does)."""
    _, rows, cols = pixels.shape
    top, left = (rows - height) // 2, (cols - width) // 2
    if top >= 0 and left >= 0:
        return pixels[:, top : top + height, left : left + width]
    out_rows, out_cols = max(height, rows), max(width, cols)
    canvas = np.zeros((pixels.shape[0], out_rows, out_cols), dtype=pixels.dtype)
    pad_top, pad_left = -(-(out_rows - rows) // 2), -(-(out_cols - cols) // 2)
    canvas[:, pad_top : pad_top + rows, pad_left : pad_left + cols] = pixels
    top, left = top + pad_top, left + pad_left
    return canvas[:, max(0, top) : min(out_rows, top + height), max(0, left) : min(out_cols, left + width)]


def preprocess(image: Any, recipe: ImageRecipe) -> Pixels:
    """One Pillow image (any mode) -> float32 pixel values [3, H, W] for the image graph."""
    rgb = to_rgb(image)
    height, width = resized_size(rgb.height, rgb.width, recipe)
    if (height, width) != (rgb.height, rgb.width):
        rgb = rgb.resize((width, height), resample=recipe.resample)
    pixels = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    if recipe.crop is not None:
        pixels = center_crop(pixels, *recipe.crop)
    scaled = (pixels.astype(np.float64) * recipe.rescale_factor).astype(np.float32)
    mean = np.asarray(recipe.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(recipe.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((scaled - mean) / std, dtype=np.float32)


def patch_inputs(image: Any, recipe: ImageRecipe) -> dict[str, npt.NDArray[Any]]:
    """NaFlex (SigLIP 2): one image -> its patches as Siglip2ImageProcessor lays them out: `pixel_values`
    [max patches, patch * patch * 3] (row-major patches, each flattened as (row, column, channel), zero padding
    after the real ones), `pixel_attention_mask` [max patches] (1 for a real patch) and `spatial_shapes` [2]
    (patch rows, patch columns)."""
    assert recipe.patches is not None, "patch_inputs needs a max_patches recipe"
    patch, max_patches = recipe.patches
    pixels = preprocess(image, recipe)
    channels, height, width = pixels.shape
    rows, cols = height // patch, width // patch
    grid = pixels.reshape(channels, rows, patch, cols, patch).transpose(1, 3, 2, 4, 0).reshape(rows * cols, -1)
    values = np.zeros((max_patches, grid.shape[1]), dtype=np.float32)
    values[: rows * cols] = grid
    mask = np.zeros(max_patches, dtype=np.int64)
    mask[: rows * cols] = 1
    return {"pixel_values": values, "pixel_attention_mask": mask, "spatial_shapes": np.array([rows, cols], np.int64)}


def image_inputs(image: Any, recipe: ImageRecipe) -> dict[str, npt.NDArray[Any]]:
    """One image's inputs for the image graph: `pixel_values` [3, H, W], or NaFlex's patches (`patch_inputs`)."""
    return {"pixel_values": preprocess(image, recipe)} if recipe.patches is None else patch_inputs(image, recipe)


def stack(items: Sequence[Mapping[str, npt.NDArray[Any]]]) -> dict[str, npt.NDArray[Any]]:
    """The image inputs of one batch, each stacked on a new batch axis (`pixel_values` [B, 3, H, W] or NaFlex's
    [B, max patches, patch * patch * 3] with its mask and shapes)."""
    return {name: np.ascontiguousarray(np.stack([item[name] for item in items])) for name in items[0]}

"""Image preprocessing (Pillow + NumPy) against the HF image processors' PIL path, on photographs and edge cases."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.images.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    ImageRecipe,
    max_patches_size,
    patch_inputs,
    preprocess,
)
from trt_embed.runtime.images.sources import ImagePolicy, ImageURL, load

Image = pytest.importorskip("PIL.Image")
transformers = pytest.importorskip("transformers")
skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field"]
CLIP_DEFAULTS = {
    "size": {"shortest_edge": 224},
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "image_mean": CLIP_MEAN,
    "image_std": CLIP_STD,
    "resample": 3,
}
SIGLIP_DEFAULTS = {
    "size": {"height": 224, "width": 224},
    "image_mean": [0.5] * 3,
    "image_std": [0.5] * 3,
    "resample": 2,
}


def processors() -> list[tuple[str, Any, ImageRecipe]]:
    """(name, HF processor, our recipe from the same config) for CLIP, SigLIP and odd sizes of each."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    configs = [
        ("clip", CLIPImageProcessorPil, {}, CLIP_DEFAULTS),
        (
            "clip-336",
            CLIPImageProcessorPil,
            {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}},
            CLIP_DEFAULTS,
        ),
        ("siglip", SiglipImageProcessorPil, {"resample": 2}, SIGLIP_DEFAULTS),
        (
            "siglip-384",
            SiglipImageProcessorPil,
            {"size": {"height": 384, "width": 384}, "resample": 3},
            SIGLIP_DEFAULTS,
        ),
    ]
    out = []
    for name, cls, overrides, defaults in configs:
        hf = cls(**overrides)
        saved = hf.to_dict()
        out.append((name, hf, ImageRecipe.from_processor_config(saved, defaults)))
    return out


def hf_pixels(processor: Any, image: Any) -> np.ndarray:
    return np.asarray(processor(images=image, return_tensors="np")["pixel_values"][0])


def assert_same(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("photo", PHOTOS)
def test_photographs_match_hf_processors(photo: str) -> None:
    image = Image.fromarray(getattr(skimage_data, photo)())
    for _name, processor, recipe in processors():
        assert_same(preprocess(image, recipe), hf_pixels(processor, image))


def synthetic() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (300, 4000, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    palette = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).convert("P")
    return {
        "1x1": Image.fromarray(np.array([[[10, 200, 30]]], dtype=np.uint8)),
        "4000x300": rgb,
        "300x4000": rgb.transpose(Image.Transpose.ROTATE_90),
        "100x100": Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)),
        "rgba": rgba,
        "la": rgba.convert("LA"),
        "palette": palette,
        "grayscale": Image.fromarray(rng.integers(0, 256, (120, 90), dtype=np.uint8), "L"),
        "bilevel": Image.fromarray(rng.integers(0, 256, (40, 41), dtype=np.uint8)).convert("1"),
        "cmyk": Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).convert("CMYK"),
    }


@pytest.mark.parametrize("case", sorted(synthetic()))
def test_edge_cases_match_hf_processors(case: str) -> None:
    image = synthetic()[case]
    for _name, processor, recipe in processors():
        assert_same(preprocess(image, recipe), hf_pixels(processor, image))


def test_palette_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    for _name, processor, recipe in processors():
        assert_same(preprocess(image, recipe), hf_pixels(processor, image))
    assert preprocess(image, processors()[2][2]).max() == pytest.approx(1.0)  # white, normalized with 0.5/0.5


def test_16_bit_is_scaled_to_8_bit_not_clipped() -> None:
    """Pillow's I;16 -> RGB conversion clips at 255; we scale, so this equals the 8-bit image through HF."""
    wide = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    image = Image.fromarray(wide)
    assert image.mode.startswith("I;16")
    narrow = Image.fromarray(np.rint(wide / 65535 * 255).astype(np.uint8), "L")
    for _name, processor, recipe in processors():
        assert_same(preprocess(image, recipe), hf_pixels(processor, narrow))


def test_exif_orientation_is_applied_like_load_image() -> None:
    from transformers.image_utils import load_image

    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    base.save(buffer, format="JPEG", exif=exif, quality=95)
    data = buffer.getvalue()
    loaded = load(data, ImagePolicy(), "input[0]")
    assert loaded.size == (60, 90)  # turned upright
    reference = load_image(Image.open(io.BytesIO(data)))  # transformers applies EXIF orientation the same way
    for _name, processor, recipe in processors():
        assert_same(preprocess(loaded, recipe), hf_pixels(processor, reference))


def test_numpy_arrays_channels_last_first_and_float() -> None:
    array = np.random.default_rng(2).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    recipe = processors()[0][2]
    expected = preprocess(Image.fromarray(array), recipe)
    policy = ImagePolicy()
    for variant in (array, array.transpose(2, 0, 1), array.astype(np.float32) / 255.0):
        np.testing.assert_allclose(preprocess(load(variant, policy, "x"), recipe), expected, atol=1e-6)
    with pytest.raises(InvalidRequest, match="shape"):
        load(np.zeros((2, 3, 4, 5), np.uint8), policy, "x")


def png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_images_are_refused_clearly(tmp_path: Any) -> None:
    policy = ImagePolicy(max_pixels=10_000, max_bytes=50_000)
    good = png(Image.new("RGB", (50, 50), (1, 2, 3)))
    with pytest.raises(InvalidRequest, match="not an image"):
        load(b"hello, not a picture", policy, "input[0]")
    with pytest.raises(InvalidRequest, match="truncated"):
        load(
            png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 90, 3), np.uint8)))[:2000],
            ImagePolicy(),
            "input[0]",
        )
    with pytest.raises(InvalidRequest, match="pixels"):
        load(png(Image.new("RGB", (200, 200))), policy, "input[0]")
    with pytest.raises(InvalidRequest, match="bytes"):
        load(b"\0" * 60_000, policy, "input[0]")
    import base64

    uri = "data:image/png;base64," + base64.b64encode(good).decode()
    assert load(ImageURL(uri), policy, "input[0]").size == (50, 50)
    with pytest.raises(InvalidRequest, match="base64"):
        load(ImageURL("data:image/png;base64,@@@"), policy, "input[0]")
    (tmp_path / "a.png").write_bytes(good)
    with pytest.raises(InvalidRequest, match="not enabled"):
        load(ImageURL(str(tmp_path / "a.png")), policy, "input[0]")
    allowed = ImagePolicy(image_dir=tmp_path)
    assert load(ImageURL("a.png"), allowed, "input[0]").size == (50, 50)
    assert load(ImageURL(f"file://{tmp_path / 'a.png'}"), allowed, "input[0]").size == (50, 50)
    with pytest.raises(InvalidRequest, match="image directory"):
        load(ImageURL(str(Path("..") / "a.png")), ImagePolicy(image_dir=tmp_path / "sub"), "input[0]")
    with pytest.raises(InvalidRequest, match="not allowed"):
        load(ImageURL("https://example.com/cat.png"), policy, "input[0]")
    with pytest.raises(InvalidRequest, match="scheme"):
        load(ImageURL("ftp://example.com/cat.png"), policy, "input[0]")


def naflex_processors() -> list[tuple[Any, ImageRecipe]]:
    """(HF Siglip2ImageProcessorPil, our recipe from its saved config): the naflex checkpoints' defaults (patch 16,
    256 patches), a small budget, and patch 14 with bicubic resampling. Unlike CLIP's and SigLIP's, this processor
    does not convert to RGB unless told (grayscale and RGBA images fail in it); we always do, so the reference
    is the processor with `do_convert_rgb=True`."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    out = []
    for overrides in (
        {},
        {"max_num_patches": 64, "patch_size": 8},
        {"patch_size": 14, "max_num_patches": 100, "resample": 3},
    ):
        hf = Siglip2ImageProcessorPil(**overrides)
        out.append((hf, ImageRecipe.from_processor_config(hf.to_dict(), {})))
        hf.do_convert_rgb = True
    return out


def assert_same_patches(image: Any) -> None:
    for processor, recipe in naflex_processors():
        ours = patch_inputs(image, recipe)
        theirs = processor(images=image, return_tensors="np")
        assert ours["pixel_values"].shape == theirs["pixel_values"][0].shape
        np.testing.assert_allclose(ours["pixel_values"], theirs["pixel_values"][0], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(ours["pixel_attention_mask"], theirs["pixel_attention_mask"][0])
        np.testing.assert_array_equal(ours["spatial_shapes"], theirs["spatial_shapes"][0])


@pytest.mark.parametrize("photo", PHOTOS)
def test_naflex_photographs_match_siglip2_processor(photo: str) -> None:
    assert_same_patches(Image.fromarray(getattr(skimage_data, photo)()))


@pytest.mark.parametrize("case", sorted(synthetic()))
def test_naflex_edge_cases_match_siglip2_processor(case: str) -> None:
    assert_same_patches(synthetic()[case])


def test_naflex_sizes_match_transformers_search() -> None:
    """The resize target of every small size and several extreme ones equals transformers' bisection."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import get_image_size_for_max_num_patches

    sizes = [(h, w) for h in range(1, 70, 3) for w in range(1, 70, 5)] + [(300, 4000), (4000, 300), (1, 10000)]
    for patch, budget in ((16, 256), (14, 729), (8, 64), (16, 1024)):
        for height, width in sizes:
            expected = get_image_size_for_max_num_patches(height, width, patch, budget)
            assert max_patches_size(height, width, patch, budget) == expected, (height, width, patch, budget)

"""Qwen2-VL and Qwen3-VL NumPy preprocessing against transformers: the image processor (PIL backend) on photographs
with the checkpoint defaults of Qwen2-VL-2B (DSE's base), the resize rule, the vision tower's patch positions and
`get_rope_index`'s multimodal positions, Qwen3-VL's resampled position table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime.vlm.qwen_vl import Qwen2VLProcessor, patch_positions, recipe_from_config, smart_resize

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")
data = pytest.importorskip("skimage.data")

# Qwen/Qwen2-VL-2B-Instruct's preprocessor_config.json (the processor DSE uses)
QWEN2_VL_2B = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
}


def photographs() -> list[Any]:
    return [
        Image.fromarray(data.astronaut()),  # 512 x 512
        Image.fromarray(data.coffee()),  # 400 x 600
        Image.fromarray(data.chelsea()),  # 300 x 451
        Image.fromarray(data.camera()).convert("RGB"),  # grayscale
        Image.fromarray(data.rocket()).resize((30, 70)),  # small: scaled up to min_pixels
    ]


@pytest.mark.parametrize("config", [QWEN2_VL_2B, {**QWEN2_VL_2B, "min_pixels": 784, "max_pixels": 200704}])
def test_pixels_and_grids_match_the_image_processor(config: dict[str, Any]) -> None:
    hf = transformers.Qwen2VLImageProcessorPil(**config)
    ours = Qwen2VLProcessor(recipe_from_config(config), {})
    for picture in photographs():
        want = hf(images=[picture], return_tensors="np")
        got = ours.image(picture)
        assert got.grid == tuple(int(v) for v in want["image_grid_thw"][0])
        assert got.tokens == int(np.prod(want["image_grid_thw"][0])) // 4
        np.testing.assert_allclose(got.feeds["pixel_values"], want["pixel_values"], atol=2e-5)


def test_resize_rule_matches_transformers() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as theirs

    sizes = [(1, 1), (28, 28), (17, 400), (1000, 30), (3000, 4000), (224, 224), (56, 57), (9, 1700)]
    for height, width in sizes:
        assert smart_resize(height, width, 28, 3136, 12845056) == theirs(height, width, 28, 3136, 12845056)
    with pytest.raises(InvalidRequest, match="aspect ratio"):
        smart_resize(1, 300, 28, 3136, 12845056)


def test_patch_positions_match_the_vision_tower() -> None:
    from transformers.vision_utils import get_vision_position_ids

    for grid in [(1, 4, 6), (1, 8, 2), (1, 36, 36)]:
        want = get_vision_position_ids(torch.tensor([grid]), 2).numpy()
        np.testing.assert_array_equal(patch_positions(grid[1], grid[2], 2), want)


def test_positions_match_get_rope_index() -> None:
    """Text, an image, more text, a second image of another shape, trailing text: transformers' 3D positions."""
    config = transformers.Qwen2VLConfig(
        image_token_id=9,
        vision_config={"spatial_merge_size": 2, "depth": 1, "embed_dim": 8, "num_heads": 2, "hidden_size": 8},
        text_config={"vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2},
    )
    model = transformers.Qwen2VLModel(config)
    ours = Qwen2VLProcessor(recipe_from_config({"patch_size": 14, "merge_size": 2}), {})
    images = [ours.image(Image.new("RGB", (112, 56))), ours.image(Image.new("RGB", (56, 168)))]
    ids = [1, 2, 3, *[9] * images[0].tokens, 4, 5, *[9] * images[1].tokens, 6]
    tensor = torch.tensor([ids])
    grids = torch.tensor([image.grid for image in images])
    want, _ = model.get_rope_index(tensor, mm_token_type_ids=(tensor == 9).int(), image_grid_thw=grids)
    got = ours.positions(np.asarray(ids), images, 9)
    np.testing.assert_array_equal(got, want[:, 0].numpy())


def test_qwen3_position_table_interpolation_matches_the_vision_tower() -> None:
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights

    from trt_embed.runtime.vlm.qwen_vl import interpolation

    for grid, side in [((1, 4, 6), 6), ((1, 36, 20), 48), ((1, 2, 2), 48)]:
        want_idx, want_w = get_vision_interpolation_indices_and_weights(
            torch.tensor([grid]), side, mode="bilinear", align_corners=True, spatial_merge_size=2
        )
        got_idx, got_w = interpolation(grid[1], grid[2], 2, side)
        np.testing.assert_array_equal(got_idx, want_idx.numpy())
        np.testing.assert_allclose(got_w, want_w.numpy(), atol=1e-6)

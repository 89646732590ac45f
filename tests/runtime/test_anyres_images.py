"""LLaVA-NeXT's anyres preprocessing in NumPy/Pillow against transformers on scikit-image photographs: pixel values
and image sizes of LlavaNextImageProcessor (PIL backend), the token count per image of LlavaNextProcessor, and the
token layout of the model's own pack_image_features (base features, unpadded crop features, newline per row)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trt_embed.runtime.vlm.llava_next import LlavaNextProcessor, best_resolution, recipe_from_configs

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")
data = pytest.importorskip("skimage.data")

PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
# llava-hf/llama3-llava-next-8b-hf's preprocessor_config.json (royokong/e5-v's base), and its CLIP ViT-L/14-336
E5V_PROCESSOR = {
    "crop_size": {"height": 336, "width": 336},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_grid_pinpoints": PINPOINTS,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 336},
}
E5V_VISION = {"image_size": 336, "patch_size": 14}
TINY_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
TINY_PROCESSOR = {
    **E5V_PROCESSOR,
    "crop_size": {"height": 32, "width": 32},
    "size": {"shortest_edge": 32},
    "image_grid_pinpoints": TINY_PINPOINTS,
}
TINY_VISION = {"image_size": 32, "patch_size": 8}


def photographs() -> list[Any]:
    return [
        Image.fromarray(data.astronaut()),  # 512 x 512
        Image.fromarray(data.coffee()),  # 400 x 600
        Image.fromarray(data.chelsea()),  # 300 x 451
        Image.fromarray(data.camera()),  # grayscale
        Image.fromarray(data.rocket()).resize((70, 300)),  # tall and narrow
        Image.fromarray(data.hubble_deep_field()[:120, :900]),  # wide strip
        Image.fromarray(data.coffee()).resize((41, 17)),  # smaller than one crop
    ]


def hf_processor(processor_config: dict[str, Any], vision: dict[str, int]) -> Any:
    """transformers' LlavaNextProcessor (PIL image processor) with a one-token tokenizer that knows `<image>`."""
    from tokenizers import Tokenizer, models

    config = dict(processor_config)
    images = transformers.LlavaNextImageProcessorPil(**config)
    words = Tokenizer(models.WordLevel({"<image>": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=words)
    return transformers.LlavaNextProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, dropped by the "default" strategy
    )


@pytest.mark.parametrize(("processor_config", "vision"), [(E5V_PROCESSOR, E5V_VISION), (TINY_PROCESSOR, TINY_VISION)])
def test_pixels_sizes_and_token_counts_match_transformers(
    processor_config: dict[str, Any], vision: dict[str, int]
) -> None:
    hf = hf_processor(processor_config, vision)
    ours = LlavaNextProcessor(recipe_from_configs({"vision_config": vision}, processor_config), {})
    crop = processor_config["crop_size"]["height"]
    for picture in photographs():
        want = hf.image_processor(images=[picture], return_tensors="np")
        got = ours.image(picture)
        height, width = (int(v) for v in want["image_sizes"][0])
        assert got.grid == (height, width)
        np.testing.assert_allclose(got.feeds["pixel_values"], want["pixel_values"][0], atol=1e-6)
        assert got.tokens == hf._get_number_of_features(height, width, crop, crop) - 1  # "default": CLS dropped


def test_best_resolution_matches_transformers() -> None:
    from transformers.image_processing_utils import select_best_resolution

    sizes = [(1, 1), (336, 336), (17, 400), (1000, 30), (3000, 4000), (672, 336), (500, 501), (9, 1700), (800, 600)]
    for size in sizes:
        assert best_resolution(*size, PINPOINTS) == tuple(select_best_resolution(size, PINPOINTS))


def test_token_layout_matches_pack_image_features() -> None:
    """Random per-crop features through the model's pack_image_features equal our table gathered by token_index,
    for several images in one vision call."""
    config = transformers.LlavaNextConfig(
        image_grid_pinpoints=TINY_PINPOINTS,
        vision_config={
            "model_type": "clip_vision_model",
            **TINY_VISION,
            "hidden_size": 8,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 8,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": 8,
            "hidden_size": 8,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 8,
        },
    )
    model = transformers.LlavaNextModel(config).eval()
    ours = LlavaNextProcessor(recipe_from_configs({"vision_config": TINY_VISION}, TINY_PROCESSOR), {})
    images = [ours.image(p) for p in photographs()]
    generator = torch.Generator().manual_seed(0)
    crops = [len(i.feeds["pixel_values"]) for i in images]
    features = torch.randn(sum(crops), 16, 8, generator=generator)
    sizes = torch.tensor([i.grid for i in images])
    with torch.no_grad():
        packed, lengths = model.pack_image_features(
            torch.split(features, crops), sizes, "default", image_newline=model.image_newline
        )
        table = torch.cat([features.reshape(-1, 8), model.image_newline[None]]).numpy()
    feeds = ours.vision_feeds(images)
    np.testing.assert_array_equal(table[feeds["token_index"]], torch.cat(packed).numpy())
    assert [i.tokens for i in images] == lengths.tolist()
    np.testing.assert_array_equal(feeds["pixel_values"], np.concatenate([i.feeds["pixel_values"] for i in images]))

"""LLaVA-NeXT's export half: the vision module (CLIP up to the chosen layer(s), projector, newline, gathered by the
runtime's token_index) against transformers' get_image_features on photographs, for one feature layer and for a
list of layers; checkpoints the anyres layout cannot serve are refused before tracing. The whole model against
transformers: tests/exporter/test_vlm.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import ExportError
from trt_embed.runtime.vlm.llava_next import LlavaNextProcessor, recipe_from_configs
from trt_embed.zoo import zoo_entry

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")
data = pytest.importorskip("skimage.data")
ARCHITECTURE = "LlavaNextForConditionalGeneration"


@pytest.mark.parametrize("layers", [-2, [-3, -1]])
def test_vision_module_matches_get_image_features(layers: Any) -> None:
    from trt_embed.exporter.models.llava_next import LlavaNextVision

    tiny = zoo_entry(ARCHITECTURE).tiny
    torch.manual_seed(0)
    config = transformers.LlavaNextConfig(**{**tiny["config"], "vision_feature_layer": layers})
    model = transformers.LlavaNextModel(config).eval()
    processor = LlavaNextProcessor(recipe_from_configs(config.to_dict(), tiny["preprocessor"]), {})
    pictures = [
        Image.fromarray(data.coffee()),
        Image.fromarray(data.camera()).resize((40, 100)),
        Image.new("RGB", (9, 5)),
    ]
    images = [processor.image(p) for p in pictures]
    feeds = processor.vision_feeds(images)
    with torch.no_grad():
        got = LlavaNextVision(model).eval()(
            torch.from_numpy(feeds["pixel_values"]), torch.from_numpy(feeds["token_index"])
        )
        want = model.get_image_features(
            torch.from_numpy(feeds["pixel_values"]), torch.tensor([i.grid for i in images])
        ).pooler_output
    np.testing.assert_allclose(got.numpy(), torch.cat(want).numpy(), atol=1e-5)
    assert [len(w) for w in want] == [i.tokens for i in images]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vision_feature_select_strategy": "full"}, "only 'default'"),
        ({"image_grid_pinpoints": [[32, 64], [64, 32]]}, "differ between config.json and preprocessor_config.json"),
    ],
)
def test_unsupported_checkpoints_are_refused(
    change: dict[str, Any], message: str, tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    from trt_embed.exporter import ExportOptions, export_model

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model(ARCHITECTURE), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ExportError, match=message):
        export_model(str(model_dir), tmp_path / "out", ExportOptions(precision="fp32"))


def test_hub_weight_names_load(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """e5-v's checkpoint was saved by transformers 4.x (`vision_tower.vision_model.*`): the family loads those names
    into the same modules as the tiny checkpoint's own."""
    from safetensors.torch import load_file, save_file

    from trt_embed.exporter.models.llava_next import FAMILY

    source = tiny_model(ARCHITECTURE)
    hub = tmp_path / "hub"
    shutil.copytree(source, hub)
    state = load_file(str(source / "model.safetensors"))
    nested = "vision_tower.vision_model."
    renamed = {nested + k[len("vision_tower.") :] if k.startswith("vision_tower.") else k: v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, str(hub / "model.safetensors"), metadata={"format": "pt"})
    want, got = FAMILY.load_model(source).state_dict(), FAMILY.load_model(hub).state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)

"""Two-tower export: the manifest's record of both graphs, a sentence-transformers CLIP folder against
sentence-transformers itself, SigLIP 2 NaFlex's patch-input image graph, and the refusals (a size or patch
size mismatch)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import ExportError
from trt_embed.exporter import ExportOptions, export_model
from trt_embed.manifest import Manifest
from trt_embed.runtime import Runtime

Image = pytest.importorskip("PIL.Image")


def test_manifest_records_modalities_and_recipe(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    manifest = export_model(str(tiny_model("SiglipModel")), tmp_path / "a", ExportOptions(precision="fp32"))
    again = Manifest.read(tmp_path / "a")
    assert {(e.file, e.modality) for e in again.engines} == {("model.onnx", "text"), ("vision.onnx", "image")}
    assert again.vision == json.loads(json.dumps(manifest.vision))
    assert again.vision is not None
    assert again.vision["preprocess"]["resize"] == "exact" and again.vision["preprocess"]["crop"] is None
    assert again.vision["text_padding"] == 16 and again.vision["image_tokens"] == 16
    text_inputs = next(e for e in again.engines if e.modality == "text").inputs
    assert [t.name for t in text_inputs] == ["input_ids"]  # SigLIP's own tokenizer gives the model no mask


def test_sentence_transformers_clip_folder(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """clip-ViT-B-32's layout (modules.json -> 0_CLIPModel/): same vectors as sentence-transformers' encode."""
    st = pytest.importorskip("sentence_transformers")
    folder = tmp_path / "st-clip"
    shutil.copytree(tiny_model("CLIPModel"), folder / "0_CLIPModel")
    modules = [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    try:
        reference = st.SentenceTransformer(str(folder), device="cpu")
    except Exception as exc:  # the tiny WordPiece tokenizer is not a CLIP tokenizer
        pytest.skip(f"sentence-transformers cannot load the tiny CLIP folder: {exc}")
    export_model(str(folder), tmp_path / "artifact", ExportOptions(precision="fp32"))
    texts = ["a cat on the river", "hello world"]
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)), Image.new("RGB", (9, 90))]
    with Runtime.load(tmp_path / "artifact", workers=1) as runtime:
        assert runtime.manifest.normalize is False  # no Normalize module: sentence-transformers does not normalize
        np.testing.assert_allclose(runtime.embed(texts), reference.encode(texts), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(runtime.embed(images=pictures), reference.encode(pictures), rtol=1e-4, atol=1e-5)


def test_refusals(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    clip = tiny_model("CLIPModel")  # (TensorRT plans are built: test_two_tower_plans.py)
    odd = tmp_path / "odd"
    shutil.copytree(clip, odd)
    config = json.loads((odd / "preprocessor_config.json").read_text())
    (odd / "preprocessor_config.json").write_text(json.dumps({**config, "crop_size": {"height": 48, "width": 48}}))
    with pytest.raises(ExportError, match="48x48"):
        export_model(str(odd), tmp_path / "c", ExportOptions(precision="fp32"))
    naflex = tmp_path / "naflex"
    shutil.copytree(tiny_model("Siglip2Model"), naflex)
    config = json.loads((naflex / "preprocessor_config.json").read_text())
    (naflex / "preprocessor_config.json").write_text(json.dumps({**config, "patch_size": 8}))
    with pytest.raises(ExportError, match="patch_size 8 but the NaFlex vision tower takes 4x4"):
        export_model(str(naflex), tmp_path / "d", ExportOptions(precision="fp32"))


def test_naflex_manifest_and_graph_inputs(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """SigLIP 2 NaFlex: the image graph takes patches [batch, max patches, patch * patch * 3], their mask and the
    patch grid; the manifest records patch size and max patches (from preprocessor_config.json, not the
    position grid's 64), and the text graph takes the Gemma-style attention mask and pads on the left."""
    manifest = export_model(str(tiny_model("Siglip2Model")), tmp_path / "a", ExportOptions(precision="fp32"))
    vision = manifest.vision
    assert vision is not None and "image_size" not in vision
    assert (vision["patch_size"], vision["max_num_patches"], vision["image_tokens"]) == (4, 48, 48)
    assert vision["preprocess"]["resize"] == "max_patches" and vision["text_padding"] == 64
    image = next(e for e in manifest.engines if e.modality == "image")
    assert [(t.name, t.dtype, t.shape) for t in image.inputs] == [
        ("pixel_values", "float32", ["batch", 48, 48]),
        ("pixel_attention_mask", "int64", ["batch", 48]),
        ("spatial_shapes", "int64", ["batch", 2]),
    ]
    text = next(e for e in manifest.engines if e.modality == "text")
    assert [t.name for t in text.inputs] == ["input_ids", "attention_mask"]
    assert manifest.tokenizer.padding_side == "left" and manifest.tokenizer.do_lower_case


def test_naflex_position_resize_is_antialiased_bilinear() -> None:
    """The position-embedding resize the NaFlex image graph carries (transformers' matrix form, traced into
    vision.onnx and checked against get_image_features in tests/runtime/test_multimodal.py) equals
    F.interpolate(bilinear, antialias=True) of the position grid, shrinking and growing, for each image's grid."""
    torch = pytest.importorskip("torch")
    from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionEmbeddings

    grid = torch.randn(16, 16, 8)
    shapes = [(16, 16), (4, 58), (23, 11), (1, 1), (1, 256), (32, 8)]
    resized = Siglip2VisionEmbeddings.resize_positional_embeddings(grid, torch.tensor(shapes), max_length=256)
    for row, (height, width) in enumerate(shapes):
        expected = torch.nn.functional.interpolate(
            grid.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )[0].permute(1, 2, 0)
        np.testing.assert_allclose(resized[row, : height * width].reshape(height, width, -1), expected, atol=1e-5)

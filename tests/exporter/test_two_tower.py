"""Two-tower export: the manifest's record of both graphs, a sentence-transformers CLIP folder against
sentence-transformers itself, and the refusals (SigLIP 2 NaFlex, TensorRT, a size mismatch)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import ExportError, UnsupportedArchitecture
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
    shutil.copytree(clip, naflex)
    (naflex / "config.json").write_text(
        json.dumps({**json.loads((clip / "config.json").read_text()), "architectures": ["Siglip2Model"]})
    )
    with pytest.raises(UnsupportedArchitecture, match="SiglipModel"):
        export_model(str(naflex), tmp_path / "d", ExportOptions(precision="fp32"))

"""Tiny random CLIP, SigLIP, SigLIP 2 (fixed resolution) and SigLIP 2 NaFlex: text and image embeddings from the
runtime against PyTorch `get_text_features` / `get_image_features` fed by the HF tokenizer and image processor."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import Runtime

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

TEXTS = ["a cat on the river", "hello world", "the blue house", "two dogs", "what time is it"]
MODELS = ["CLIPModel", "SiglipModel", "Siglip2", "Siglip2Model"]


def images() -> list[Any]:
    rng = np.random.default_rng(3)
    return [
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (100, 30), dtype=np.uint8), "L"),
        Image.fromarray(rng.integers(0, 256, (33, 33, 4), dtype=np.uint8), "RGBA"),
        Image.new("RGB", (7, 300), (10, 200, 40)),
    ]


@pytest.fixture(scope="module")
def two_tower(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """name -> model directory; "Siglip2" is the tiny SigLIP with a tokenizer that hands the model an attention
    mask, as SigLIP 2's Gemma tokenizer does (the fixed-resolution google/siglip2-* checkpoints are SiglipModel)."""

    def make(name: str) -> Path:
        if name != "Siglip2":
            return tiny_model(name)
        directory = tmp_path_factory.mktemp("siglip2") / "model"
        if not directory.is_dir():
            shutil.copytree(tiny_model("SiglipModel"), directory)
            config = json.loads((directory / "tokenizer_config.json").read_text())
            config.pop("model_input_names")
            (directory / "tokenizer_config.json").write_text(json.dumps(config))
        return directory

    return make


@pytest.fixture(scope="module")
def artifacts(two_tower: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    from trt_embed.exporter import ExportOptions, export_model

    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            made[name] = tmp_path_factory.mktemp(f"mm-{name}") / "artifact"
            export_model(str(two_tower(name)), made[name], ExportOptions(precision="auto"))
        return made[name]

    return make


def reference(model_dir: Path, texts: list[str], pictures: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """What PyTorch gives, through the HF tokenizer and image processor of the checkpoint."""
    from transformers import AutoImageProcessor, AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    model = getattr(transformers, config["architectures"][0]).from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if config["model_type"] == "siglip2":
        # transformers' Siglip2Tokenizer rebuilds a Gemma-style BPE around the vocabulary (right for the real
        # checkpoints' Gemma tokenizer.json only): the tiny WordPiece tokenizer is loaded as it is, with that
        # class's left padding (its lowercasing is the tiny tokenizer's own)
        tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(str(model_dir), padding_side="left")
    siglip = "siglip" in config["model_type"]
    positions = config["text_config"]["max_position_embeddings"]
    tokens = tokenizer(
        texts, padding="max_length" if siglip else True, max_length=positions if siglip else None, return_tensors="pt"
    )
    processor = AutoImageProcessor.from_pretrained(str(model_dir), backend="pil")
    processor.do_convert_rgb = True  # Siglip2's processor leaves grayscale and RGBA as they are, and fails on them
    pixels = processor(images=pictures, return_tensors="pt")  # NaFlex: with pixel_attention_mask, spatial_shapes
    with torch.no_grad():
        text = model.get_text_features(**tokens)
        image = model.get_image_features(**pixels)
    as_array = [(o if isinstance(o, torch.Tensor) else o.pooler_output).numpy() for o in (text, image)]
    return as_array[0], as_array[1]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


BACKENDS = ["onnxruntime-cpu", "openvino-cpu"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_text_and_image_match_pytorch(
    name: str, backend: str, two_tower: Callable[[str], Path], artifacts: Callable[[str], Path]
) -> None:
    if backend == "openvino-cpu":
        pytest.importorskip("openvino")
    text_ref, image_ref = reference(two_tower(name), TEXTS, images())
    with Runtime.load(artifacts(name), backend=backend, workers=1) as runtime:
        text = runtime.embed(TEXTS)
        image = runtime.embed(images=images())
        assert cosines(text, text_ref).min() >= 0.99999
        assert cosines(image, image_ref).min() >= 0.99999
        np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1.0, rtol=1e-5)
        # batched equals one at a time, and a mixed list equals the two parts
        singles = np.concatenate([runtime.embed(images=[p]) for p in images()])
        np.testing.assert_allclose(singles, image, atol=1e-5)
        np.testing.assert_allclose(np.concatenate([runtime.embed([t]) for t in TEXTS]), text, atol=1e-5)
        mixed = runtime.embed([TEXTS[0], images()[1], TEXTS[1], images()[0]])
        np.testing.assert_allclose(mixed, np.stack([text[0], image[1], text[1], image[0]]), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_reduced_precisions_shipped_only_when_accurate(
    name: str, two_tower: Callable[[str], Path], artifacts: Callable[[str], Path]
) -> None:
    """`auto` export keeps fp16 and int8 copies of each tower only if they pass the accuracy rule: whatever was
    shipped, run through the runtime, is that close to PyTorch."""
    from trt_embed.manifest import Manifest

    manifest = Manifest.read(artifacts(name))
    shipped = {(e.modality, e.precision) for e in manifest.engines}
    assert {("text", "fp32"), ("image", "fp32")} <= shipped
    text_ref, image_ref = reference(two_tower(name), TEXTS, images())
    for precision in ("fp16", "int8"):
        if not {("text", precision), ("image", precision)} <= shipped:
            continue
        with Runtime.load(artifacts(name), precision=precision, backend="onnxruntime-cpu", workers=1) as runtime:
            text, image = cosines(runtime.embed(TEXTS), text_ref), cosines(runtime.embed(images=images()), image_ref)
        floor = 0.999 if precision == "fp16" else 0.97
        assert min(text.min(), image.min()) >= floor, (precision, text, image)


def test_image_cost_is_the_patch_tokens(artifacts: Callable[[str], Path]) -> None:
    from trt_embed.manifest import Manifest

    vision = Manifest.read(artifacts("CLIPModel")).vision
    assert vision is not None and vision["image_tokens"] == 17  # (32 / 8)^2 patches + the class token


def test_naflex_image_cost_is_its_own_patches(artifacts: Callable[[str], Path]) -> None:
    """Each NaFlex image costs the patches it really has (at most max_num_patches = 48), as the processor cuts it."""
    from trt_embed.manifest import Manifest
    from trt_embed.runtime.images.preprocess import max_patches_size
    from trt_embed.runtime.images.two_tower import ImagePreparer
    from trt_embed.runtime.options import RuntimeOptions

    preparer = ImagePreparer(Manifest.read(artifacts("Siglip2Model")), RuntimeOptions())
    prepared = preparer.prepare(images(), "base", range(4))
    expected = [(h // 4) * (w // 4) for h, w in (max_patches_size(p.height, p.width, 4, 48) for p in images())]
    assert [item.cost for item in prepared.items] == expected
    assert len(set(expected)) > 1 and max(expected) <= 48


def test_image_sources_and_async(artifacts: Callable[[str], Path], tmp_path: Path) -> None:
    import asyncio
    import base64

    picture = images()[0]
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = buffer.getvalue()
    (tmp_path / "p.png").write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    with Runtime.load(artifacts("CLIPModel"), workers=1) as runtime:
        expected = runtime.embed(images=[picture])[0]
        sources = [data, tmp_path / "p.png", str(tmp_path / "p.png"), uri, np.asarray(picture)]
        got = runtime.embed(images=sources)
        np.testing.assert_allclose(got, np.repeat(expected[None], len(sources), axis=0), atol=1e-6)
        result = asyncio.run(runtime.aembed(None, images=[data]))
        np.testing.assert_allclose(result[0], expected, atol=1e-6)
        scores = runtime.score("a cat on the river", [picture, images()[1]])
        text = runtime.embed(["a cat on the river"])[0]
        np.testing.assert_allclose(scores, runtime.embed(images=[picture, images()[1]]) @ text, atol=1e-5)
        with pytest.raises(InvalidRequest, match="not an image"):
            runtime.embed(images=[b"not an image"])
        many = runtime.embed(images=[data] * 150)  # in-process: any number, in chunks of 64
        np.testing.assert_allclose(many, np.repeat(expected[None], 150, axis=0), atol=1e-6)
    limited = Runtime.load(artifacts("CLIPModel"), workers=1, max_images=4)
    with limited, pytest.raises(InvalidRequest, match="at most 4"):
        limited.embed(images=[data] * 5)


def test_images_to_a_text_model_are_refused(tiny_artifact: Callable[[str], Path]) -> None:
    with (
        Runtime.load(tiny_artifact("BertModel"), workers=1) as runtime,
        pytest.raises(InvalidRequest, match="text only"),
    ):
        runtime.embed(images=[images()[0]])

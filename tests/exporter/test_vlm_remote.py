"""Phi-3-V (VLM2Vec) and Llama-Nemotron-VL: our modules and our NumPy/Pillow preprocessing against outputs of the
ORIGINAL remote code (tests/golden/phi3_v, tests/golden/llama_nemotron_vl and their READMEs), then the exported
artifact against the golden batches (text only, image only, mixed, different image sizes in one batch), batched
equals single through the runtime (the HTTP server: tests/server/test_server_vlm_remote.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import GOLDEN

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")
skimage_data = pytest.importorskip("skimage.data")

FOLDERS = {"phi3_v": "Phi3VForCausalLM", "llama_nemotron_vl": "LlamaNemotronVLModel"}
ATOL = 1e-4
MIN_COSINE = 0.99999
PHOTOS: dict[str, Callable[[], Any]] = {
    "chelsea": lambda: skimage_data.chelsea(),
    "coffee": lambda: skimage_data.coffee(),
    "rocket": lambda: skimage_data.rocket(),
    "astronaut_strip": lambda: skimage_data.astronaut()[:, 200:330],
    "camera": lambda: skimage_data.camera(),
    "hubble": lambda: skimage_data.hubble_deep_field()[:300, :900],
}


def golden(folder: str, name: str = "golden.npz") -> dict[str, np.ndarray]:
    with np.load(GOLDEN / folder / name) as data:
        return dict(data)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def pooled(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "last":
        return hidden[np.arange(len(mask)), mask.sum(1) - 1]
    return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def golden_pixels(folder: str, data: dict[str, np.ndarray], key: str) -> tuple[np.ndarray, Any]:
    """An image's vision input: Nemotron's golden tiles as stored; Phi-3-V's crops by our HD transform (the
    original's are recorded as samples: 336-pixel crops are too large to store; the test below checks them)."""
    if folder == "llama_nemotron_vl":
        return data[f"img_{key}_pixel_values"], None
    from trt_embed.runtime.vlm import phi3_v as hd_images

    crops, size = hd_images.preprocess(Image.fromarray(data[f"img_{key}"]), int(data["num_crops"]))
    return crops, size


def image_rows(folder: str, model: Any, data: dict[str, np.ndarray], key: str) -> np.ndarray:
    """One golden image's token features through our vision module."""
    pixels, size = golden_pixels(folder, data, key)
    with torch.no_grad():
        if folder == "llama_nemotron_vl":
            return np.asarray(model.vision(torch.from_numpy(pixels)).numpy())
        from trt_embed.runtime.vlm.phi3_v import token_index

        table = model.vision.table(torch.from_numpy(pixels)).numpy()
        return np.asarray(table[token_index(*size, 0, len(table) - 2)])


def golden_embeds(folder: str, table: np.ndarray, rows: Callable[[str], np.ndarray], i: int, data: Any) -> np.ndarray:
    """inputs_embeds of golden batch i: token rows, image features at the placeholders (Phi-3-V: negative ids)."""
    ids = data[f"b{i}_input_ids"]
    placeholder = ids < 0 if folder == "phi3_v" else ids == 1000
    embeds = table[np.clip(ids, 0, None)].astype(np.float32)
    for r, key in enumerate(data[f"b{i}_images"]):
        if key:
            embeds[r, placeholder[r]] = rows(str(key))
    return embeds


def batches(data: dict[str, np.ndarray]) -> list[int]:
    return sorted({int(k[1 : k.index("_")]) for k in data if k.startswith("b") and k.endswith("_input_ids")})


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_pytorch_modules_match_original_code(folder: str) -> None:
    data = golden(folder)
    if folder == "phi3_v":
        from trt_embed.exporter.models.phi3_v import Phi3V

        model: Any = Phi3V(GOLDEN / folder / "model").eval()
        table, mode = model.embed_tokens.weight.numpy(), "last"

        def decode(embeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return np.asarray(model.text(torch.from_numpy(embeds), torch.from_numpy(mask)).last_hidden_state.numpy())
    else:
        from trt_embed.exporter.models.decoder import EmbedsDecoder
        from trt_embed.exporter.models.nemotron_vl import NemotronVL

        model = NemotronVL(GOLDEN / folder / "model").eval()
        decoder = EmbedsDecoder(model.language_model, bidirectional=True).eval()
        table, mode = model.language_model.embed_tokens.weight.detach().numpy(), "mean"

        def decode(embeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
            positions = torch.from_numpy(np.clip(np.cumsum(mask, 1) - 1, 0, None))
            return np.asarray(decoder(torch.from_numpy(embeds), torch.from_numpy(mask), positions).numpy())

    features = {key: image_rows(folder, model, data, key) for key in ("a",)}
    np.testing.assert_allclose(features["a"], data["img_a_image_embeddings"].reshape(-1, table.shape[1]), atol=ATOL)
    for i in batches(data):
        mask = data[f"b{i}_attention_mask"]
        with torch.no_grad():
            hidden = decode(golden_embeds(folder, table, lambda k: image_rows(folder, model, data, k), i, data), mask)
        if f"b{i}_last_hidden_state" in data:
            real = mask.astype(bool)
            np.testing.assert_allclose(hidden[real], data[f"b{i}_last_hidden_state"][real], atol=ATOL, rtol=ATOL)
        else:  # Phi-3-V's batch past 4096 tokens (LongRoPE long factors for the whole batch): parts kept
            np.testing.assert_allclose(hidden[1, :20], data[f"b{i}_last_hidden_state_short"], atol=ATOL)
            np.testing.assert_allclose(hidden[0, -8:], data[f"b{i}_last_hidden_state_long_tail"], atol=ATOL)
        vectors = pooled(hidden, mask, mode)
        np.testing.assert_allclose(vectors, data[f"b{i}_pooled_{mode}"], atol=ATOL, rtol=ATOL)
        assert cosine(vectors, data[f"b{i}_embedding"]).min() >= MIN_COSINE


@pytest.mark.parametrize("crops", [4, 16])
def test_phi3_v_hd_transform_matches_the_original_processor(crops: int) -> None:
    from trt_embed.runtime.vlm import phi3_v as hd_images

    data = golden("phi3_v", "preprocess.npz")
    for name, load in PHOTOS.items():
        key, image = f"{name}_c{crops}", Image.fromarray(load())
        ours, size = hd_images.preprocess(image, crops)
        assert size == tuple(data[f"{key}_image_size"]) == hd_images.padded_size(image.width, image.height, crops)
        assert hd_images.num_image_tokens(*size) == int(data[f"{key}_num_img_tokens"])
        full = np.zeros(tuple(data[f"{key}_shape"]), dtype=np.float32)  # the original pads to num_crops + 1 crops
        full[: len(ours)] = ours
        np.testing.assert_allclose(full.reshape(-1)[data[f"{key}_index"]], data[f"{key}_sample"], atol=1e-5)
        sums = full.astype(np.float64).reshape(len(full), -1).sum(1)
        np.testing.assert_allclose(sums, data[f"{key}_sum"], atol=0.05)  # sums over 338,688 values per crop


def test_nemotron_tiling_matches_the_original_processor() -> None:
    """Same tile grids and thumbnails; pixel values within 2 grey levels (Pillow's bicubic vs torchvision's
    antialiased bicubic on tensors), on average within 1e-4."""
    from trt_embed.runtime.vlm.nemotron_vl import NemotronVLProcessor, recipe_from_configs

    data = golden("llama_nemotron_vl", "preprocess.npz")
    processor = NemotronVLProcessor(recipe_from_configs({"vision_config": {"patch_size": 16}}, {}), {})
    for name, load in PHOTOS.items():
        pixels = processor.image(Image.fromarray(load())).feeds["pixel_values"]
        assert len(pixels) == int(data[f"{name}_num_tiles"]) == int(data[f"{name}_shape"][0])
        error = np.abs(pixels.reshape(-1)[data[f"{name}_index"]] - data[f"{name}_sample"])
        assert error.max() <= 2 / 127.5 + 1e-6 and error.mean() < 1e-4, (name, error.max(), error.mean())


def run_artifact(artifact: Path, folder: str, data: dict[str, np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """Each golden batch through the exported vision and decoder graphs (onnxruntime), spliced here."""
    import onnxruntime as ort

    manifest = json.loads((artifact / "trt_embed.json").read_text())
    table = np.load(artifact / manifest["vlm"]["embeddings"])
    vision = ort.InferenceSession(str(artifact / "vision.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])

    def rows(key: str) -> np.ndarray:
        pixels, size = golden_pixels(folder, data, key)
        feeds = {"pixel_values": pixels}
        if size is not None:
            from trt_embed.runtime.vlm.phi3_v import token_index

            feeds["token_index"] = token_index(*size, 0, len(pixels) * 144)
        return np.asarray(vision.run(["image_features"], feeds)[0])

    for i in batches(data):
        mask = data[f"b{i}_attention_mask"]
        feeds = {
            "inputs_embeds": golden_embeds(folder, table, rows, i, data),
            "attention_mask": mask,
            "position_ids": np.clip(np.cumsum(mask, 1) - 1, 0, None),
        }
        names = [n.name for n in decoder.get_inputs()]
        yield i, np.asarray(decoder.run(["sentence_embedding"], {n: feeds[n] for n in names})[0])


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_artifact_matches_original_code(folder: str, tiny_artifact: Callable[[str], Path]) -> None:
    """Text only, image only, mixed rows and two image sizes in one batch, through the exported graphs."""
    data = golden(folder)
    artifact = tiny_artifact(FOLDERS[folder])
    mode = json.loads((artifact / "trt_embed.json").read_text())["pooling"]["mode"]
    for i, got in run_artifact(artifact, folder, data):
        np.testing.assert_allclose(got, data[f"b{i}_pooled_{mode}"], atol=ATOL, rtol=ATOL)
        assert cosine(got, data[f"b{i}_embedding"]).min() >= MIN_COSINE


def photo(name: str, scale: int = 4) -> Any:
    return Image.fromarray(PHOTOS[name]()[::scale, ::scale])


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_batched_equals_single_with_mixed_inputs(folder: str, tiny_artifact: Callable[[str], Path]) -> None:
    from trt_embed.runtime import Runtime
    from trt_embed.runtime.types import Interleaved

    inputs = [
        "the cat in the house",
        photo("chelsea"),
        photo("astronaut_strip", 2),
        Interleaved((photo("coffee", 8), "a cup of coffee")),
        "a dog",
    ]
    with Runtime.load(tiny_artifact(FOLDERS[folder]), backend="onnxruntime-cpu") as runtime:
        together = runtime.embed(inputs)
        alone = np.concatenate([runtime.embed([item]) for item in inputs])
    assert cosine(together, alone).min() >= MIN_COSINE
    assert cosine(together[1], together[2]) < 0.9999, "different images give different vectors"

"""Vision-language embedders, exported from tiny random models of each architecture: texts, images (real
photographs from scikit-image, of different sizes in one batch) and a text with its image, against transformers'
own forward pooled as the model card does (tests/vlm_reference.py); batched equals single; chat messages with
image parts; the manifest's record; the export memory check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vlm_reference import REFERENCES, reference

from trt_embed.errors import ExportError
from trt_embed.runtime import Interleaved, Runtime

Image = pytest.importorskip("PIL.Image")
data = pytest.importorskip("skimage.data")
VLMS = sorted(REFERENCES)
EXACT = 0.99999


def photos() -> list[Any]:
    """Real photographs of different sizes and shapes (RGB and grayscale)."""
    return [
        Image.fromarray(data.astronaut()).resize((64, 64)),
        Image.fromarray(data.coffee()).resize((90, 60)),
        Image.fromarray(data.camera()).resize((40, 100)),
        Image.fromarray(data.chelsea()),
    ]


@pytest.fixture(scope="module", params=VLMS)
def vlm(request: pytest.FixtureRequest, tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]) -> Any:
    architecture = request.param
    runtime = Runtime.load(tiny_artifact(architecture), workers=1)
    yield architecture, runtime, reference(architecture, tiny_model(architecture))
    runtime.close()


def test_texts_images_and_mixed_match_transformers(vlm: Any) -> None:
    _, runtime, embed = vlm
    pictures = photos()
    texts = ["a cat on the river", "what is the weather like in the city tonight?"]
    inputs: list[Any] = [*texts, *pictures, Interleaved((pictures[1], "coffee on a table"))]
    expected = [embed("text", t, None) for t in texts]
    expected += [embed("image", None, p) for p in pictures]
    expected.append(embed("mixed", "coffee on a table", pictures[1]))
    batched = runtime.embed(inputs)  # texts, and images of four sizes, in one request
    cosines = np.sum(batched * np.stack(expected), axis=1)
    assert cosines.min() >= EXACT, cosines
    single = np.concatenate([runtime.embed([item]) for item in inputs])
    np.testing.assert_allclose(batched, single, atol=2e-5)
    np.testing.assert_allclose(runtime.embed(images=pictures[:2]), batched[2:4], atol=2e-5)


def test_chat_messages_with_image_parts(vlm: Any) -> None:
    """A conversation holding an image part and its text is the same input as the model's image prompt; a
    conversation without an image gets the placeholder image where the model's text prompt has one. Special
    tokens come from the chat template (e5-v's llama3 template writes BOS), as the server asks for messages."""
    from trt_embed.runtime import ChatOptions, Dense, EmbedRequest

    _, runtime, embed = vlm
    picture = photos()[1]
    chat = ChatOptions(add_generation_prompt=True)
    template = runtime.manifest.vlm["templates"]
    image_text = template["image"].replace("{image}", "")
    parts = [{"type": "image", "image": picture}, {"type": "text", "text": image_text}]
    system = [{"role": "system", "content": template["instruction"]}] if "instruction" in template else []
    conversation = [*system, {"role": "user", "content": _as_url(parts)}]
    result = runtime.run(EmbedRequest(messages=conversation, chat=chat, add_special_tokens=False))
    assert isinstance(result.output, Dense)
    assert float(result.output.vectors[0] @ embed("image", None, picture)) >= EXACT
    query = template["text"].replace("{image}", "").replace("{text}", "a query")
    text_only = [*system, {"role": "user", "content": query}]
    result = runtime.run(EmbedRequest(messages=text_only, chat=chat, add_special_tokens=False))
    assert isinstance(result.output, Dense)
    assert float(result.output.vectors[0] @ embed("text", "a query", None)) >= EXACT


def _as_url(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import base64
    import io

    out = []
    for part in parts:
        if part["type"] == "image":
            buffer = io.BytesIO()
            part["image"].save(buffer, format="PNG")
            url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            out.append({"type": "image_url", "image_url": {"url": url}})
        else:
            out.append(part)
    return out


def test_manifest_records_both_graphs(vlm: Any) -> None:
    _, runtime, _ = vlm
    manifest = runtime.manifest
    assert {(e.file, e.modality) for e in manifest.engines} == {("model.onnx", "text"), ("vision.onnx", "image")}
    assert manifest.vlm is not None and manifest.vlm["embeddings"] in manifest.files
    decoder = next(e for e in manifest.engines if e.modality == "text")
    assert [t.name for t in decoder.inputs][:2] == ["inputs_embeds", "attention_mask"]
    for entry in manifest.engines:
        assert entry.quality["cosine_min"] >= EXACT


def test_bad_inputs_are_refused(vlm: Any) -> None:
    from trt_embed.errors import InvalidRequest

    _, runtime, _ = vlm
    with pytest.raises(InvalidRequest, match="token-id lists"):
        runtime.embed([[1, 2, 3]])
    with pytest.raises(InvalidRequest, match="not an image"):
        runtime.embed(images=[b"not an image"])
    with pytest.raises(InvalidRequest, match="does not export token_embeddings"):
        runtime.encode(["a"], pooling_task="token_embed")
    with pytest.raises(InvalidRequest, match="placeholder"):
        token = runtime.manifest.vlm["image_placeholder"]
        runtime.embed([f"a text with the image token {token} in it"])


def test_export_refuses_a_model_too_large_for_memory(
    tiny_model: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 72B-sized Qwen2-VL config is refused before any weight is read (the weights here are the tiny ones)."""
    from trt_embed.exporter import ExportOptions, export_model

    big = tmp_path / "big"
    shutil.copytree(tiny_model("Qwen2VLForConditionalGeneration"), big)
    config = json.loads((big / "config.json").read_text())
    config["text_config"].update(hidden_size=8192, num_hidden_layers=80, intermediate_size=29568, vocab_size=152064)
    config["text_config"].pop("layer_types", None)
    (big / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("TRT_EMBED_EXPORT_MEMORY_GB", "24")
    with pytest.raises(ExportError, match=r"needs about \d+ GiB of memory .* this machine has 24 GiB"):
        export_model(str(big), tmp_path / "out", ExportOptions(precision="fp32"))


def test_tensorrt_plans_are_refused_clearly(vlm: Any, tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """No TensorRT plans for VLMs yet: export and build-engine say so instead of building something wrong."""
    from trt_embed.exporter import ExportOptions, export_model
    from trt_embed.exporter.plans import PlanOptions, build_engine

    architecture, runtime, _ = vlm
    with pytest.raises(ExportError, match="TensorRT plans are not built for vision-language models"):
        options = ExportOptions(precision="fp32", engine="tensorrt")
        export_model(str(tiny_model(architecture)), tmp_path / "out", options)
    with pytest.raises(ExportError, match="TensorRT plans are not built for vision-language models"):
        build_engine(runtime.artifact.directory, PlanOptions(precisions=("fp32",)))


def test_fp16_copies_pass_the_accuracy_rule(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """An fp32+fp16 export keeps fp16 copies of both graphs (each checked against PyTorch at export), and the
    fp16 runtime embeds texts and images within the fp16 rule of the fp32 runtime."""
    from trt_embed.exporter import ExportOptions, export_model

    out = tmp_path / "artifact"
    export_model(str(tiny_model("Qwen2VLForConditionalGeneration")), out, ExportOptions(precision="fp32,fp16"))
    with Runtime.load(out, workers=1) as fp32, Runtime.load(out, workers=1, precision="fp16") as fp16:
        files = {e.file for e in fp16.manifest.engines if e.precision == "fp16"}
        assert {"model.fp16.onnx", "vision.fp16.onnx"} <= files
        assert fp16.engine.entry.precision == "fp16" and fp16.pool.images is not None
        assert fp16.pool.images.entry.file == "vision.fp16.onnx"
        inputs: list[Any] = ["a cat on the river", *photos()[:2]]
        cosines = np.sum(fp32.embed(inputs) * fp16.embed(inputs), axis=1)
    assert cosines.min() >= 0.999, cosines

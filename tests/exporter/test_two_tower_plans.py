"""TensorRT-RTX plans for both towers of CLIP and SigLIP, built on this CPU like the text models' plans
(test_tensorrt.py): the text graph with the token profiles, the image graph with pixel_values [batch, 3, H, W]
profiled by batch; checked through the TensorRT API and recorded per modality in the manifest."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from trt_embed.manifest import Manifest, ShapeProfile, sha256_file

trt = pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX builds plans without a GPU: pip install tensorrt-rtx-cu13"
)

from trt_embed.exporter.plans import PlanOptions, build_engine  # noqa: E402
from trt_embed.exporter.tensorrt import BuildOptions, config_for, network_from_onnx, plan_from_network  # noqa: E402

TOWERS = ["CLIPModel", "SiglipModel"]  # (+ SigLIP 2 NaFlex: test_naflex_image_tower_plan)
PROFILES = [ShapeProfile(min=(1, 1), opt=(4, 16), max=(8, 16))]  # the tiny SigLIP has 16 positions


def _dtypes(network: Any, kind: str) -> set[Any]:
    layers = (network.get_layer(i) for i in range(network.num_layers))
    return {layer.get_output_type(0) for layer in layers if layer.type == getattr(trt.LayerType, kind)}


@pytest.fixture(scope="module")
def towers(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Two-tower artifacts with their fp16 graphs (kept where they pass the accuracy rule), exported once."""
    from trt_embed.exporter import ExportOptions, export_model

    made: dict[str, Path] = {}

    def make(architecture: str) -> Path:
        if architecture not in made:
            out = tmp_path_factory.mktemp(f"towers-{architecture}") / "artifact"
            export_model(str(tiny_model(architecture)), out, ExportOptions(precision="fp32,fp16"))
            made[architecture] = out
        return made[architecture]

    return make


@pytest.mark.parametrize("architecture", TOWERS)
def test_image_tower_network_and_plan(architecture: str, towers: Callable[[str], Path]) -> None:
    artifact = towers(architecture)
    manifest = Manifest.read(artifact)
    height, width = manifest.vision["image_size"]  # type: ignore[index]
    graphs = [e.file for e in manifest.engines if e.modality == "image" and e.precision in ("fp32", "fp16")]
    assert sorted(graphs) == ["vision.fp16.onnx", "vision.onnx"]
    for graph in graphs:
        options = BuildOptions(profiles=PROFILES, targets=["86"], optimization_level=0, progress=False)
        build = config_for(network_from_onnx(artifact / graph, "tensorrt-rtx"), options)
        network = build.network
        pixels = network.get_input(0)
        assert network.num_inputs == 1 and pixels.name == "pixel_values"
        assert tuple(pixels.shape) == (-1, 3, height, width) and pixels.dtype == trt.DataType.FLOAT
        output = network.get_output(0)
        assert output.name == "sentence_embedding" and output.dtype == trt.DataType.FLOAT
        compute = trt.DataType.HALF if ".fp16." in graph else trt.DataType.FLOAT
        assert _dtypes(network, "MATRIX_MULTIPLY") == {compute}
        assert [tuple(s) for s in build.profiles[0].get_shape("pixel_values")] == [
            (1, 3, height, width),
            (4, 3, height, width),
            (8, 3, height, width),
        ]
        assert len(plan_from_network(build)) > 100_000


@pytest.mark.parametrize("architecture", TOWERS)
def test_build_engine_adds_both_towers(architecture: str, towers: Callable[[str], Path], tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(towers(architecture), artifact)
    plans = build_engine(artifact, PlanOptions(targets=["80", "86"], profiles=PROFILES, optimization_level=0))
    manifest = Manifest.read(artifact)
    recorded = {(e.modality, e.precision): e for e in manifest.engines if e.kind == "tensorrt"}
    assert set(recorded) == {(m, p) for m in ("text", "image") for p in ("fp32", "fp16")}
    assert len(plans) == len(recorded)
    tokens = manifest.vision["image_tokens"]  # type: ignore[index]
    for (modality, precision), plan in recorded.items():
        stem = "vision" if modality == "image" else "model"
        assert plan.file == f"engines/{stem}.{precision}.sm80-sm86.plan" and plan.target == "sm_80,sm_86"
        assert sha256_file(artifact / plan.file) == plan.sha256
        graph = onnx.load(str(artifact / plan.extra["source"]), load_external_data=False).graph
        assert [i.name for i in plan.inputs] == [i.name for i in graph.input]
        assert [o.name for o in plan.outputs] == ["sentence_embedding"]
        if modality == "image":  # an image costs its patch tokens; the batch sizes are the text profiles'
            assert plan.profiles == [ShapeProfile(min=(1, tokens), opt=(4, tokens), max=(8, tokens))]
        else:
            assert plan.profiles == PROFILES


def test_export_with_tensorrt_builds_both_towers(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    from trt_embed.exporter import ExportOptions, export_model

    plans = PlanOptions(targets=["89"], optimization_level=0, profiles=PROFILES)
    manifest = export_model(
        str(tiny_model("CLIPModel")), tmp_path / "a", ExportOptions(engine="tensorrt", precision="fp32", plans=plans)
    )
    built = sorted((e.modality, e.file) for e in manifest.engines if e.kind == "tensorrt")
    assert built == [("image", "engines/vision.fp32.sm89.plan"), ("text", "engines/model.fp32.sm89.plan")]


def test_naflex_image_tower_plan(towers: Callable[[str], Path], tmp_path: Path) -> None:
    """SigLIP 2 NaFlex: the image graph's three inputs keep the graph's patch and grid sizes at every profile
    point, only the batch follows the profile; fp32 and fp16 plans of both towers are built and recorded."""
    artifact = tmp_path / "artifact"
    shutil.copytree(towers("Siglip2Model"), artifact)
    vision = Manifest.read(artifact).vision
    assert vision is not None
    patches, width = vision["max_num_patches"], 3 * vision["patch_size"] ** 2
    options = BuildOptions(profiles=PROFILES, targets=["86"], optimization_level=0, progress=False)
    build = config_for(network_from_onnx(artifact / "vision.fp16.onnx", "tensorrt-rtx"), options)
    inputs = [build.network.get_input(i) for i in range(build.network.num_inputs)]
    assert [(t.name, tuple(t.shape)) for t in inputs] == [
        ("pixel_values", (-1, patches, width)),
        ("pixel_attention_mask", (-1, patches)),
        ("spatial_shapes", (-1, 2)),
    ]
    expected = {"pixel_values": (patches, width), "pixel_attention_mask": (patches,), "spatial_shapes": (2,)}
    for name, rest in expected.items():
        assert [tuple(s) for s in build.profiles[0].get_shape(name)] == [(b, *rest) for b in (1, 4, 8)]
    assert len(plan_from_network(build)) > 100_000
    text_profiles = [ShapeProfile(min=(1, 64), opt=(4, 64), max=(8, 64))]  # SigLIP 2 pads texts to 64
    build_engine(artifact, PlanOptions(targets=["86"], profiles=text_profiles, optimization_level=0))
    recorded = {(e.modality, e.precision) for e in Manifest.read(artifact).engines if e.kind == "tensorrt"}
    assert recorded == {(m, p) for m in ("text", "image") for p in ("fp32", "fp16")}

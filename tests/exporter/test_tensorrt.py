"""TensorRT plans build for every zoo architecture at fp32 and fp16 for two compute capabilities, on a CPU.

Checked through the TensorRT API (parsed network, layer dtypes, builder config, serialized plan), not by
reading our manifest back. Needs TensorRT-RTX (its builder works without a GPU); skipped without it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from trt_embed.errors import ExportError
from trt_embed.exporter.onnx_graph import fp16_from_onnx
from trt_embed.exporter.profiles import default_profiles, format_profile, parse_profiles
from trt_embed.manifest import ShapeProfile
from trt_embed.zoo import load_zoo

trt = pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX builds plans without a GPU: pip install tensorrt-rtx-cu13"
)

from trt_embed.exporter.tensorrt import (  # noqa: E402
    BuildOptions,
    config_for,
    network_from_onnx,
    normalize_sm,
    plan_from_network,
)

# Every text architecture, sparse and multi-vector heads included (SPLADE, bge-m3, ColBERT); the two towers of
# CLIP/SigLIP are built in test_two_tower_plans.py; VLMs have no plans yet (their refusal: tests/exporter/test_vlm.py).
ARCHITECTURES = sorted(name for name, entry in load_zoo().items() if entry.family not in ("two_tower", "vlm"))
TARGETS = ["80", "86"]
PROFILES = [ShapeProfile(min=(1, 1), opt=(4, 16), max=(8, 32)), ShapeProfile(min=(1, 1), opt=(2, 64), max=(4, 64))]
FAST = BuildOptions(profiles=PROFILES, targets=TARGETS, optimization_level=0, progress=False)


def _dtypes(network: Any, kind: str) -> set[Any]:
    layers = (network.get_layer(i) for i in range(network.num_layers))
    return {layer.get_output_type(0) for layer in layers if layer.type == getattr(trt.LayerType, kind)}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_plans_build_for_every_architecture(
    architecture: str, tiny_artifact: Callable[[str], Path], tmp_path: Path
) -> None:
    artifact = tiny_artifact(architecture)
    fp32_graph = artifact / "model.onnx"
    fp16_graph = tmp_path / "model.fp16.onnx"
    fp16_from_onnx(fp32_graph, fp16_graph)
    loaded = onnx.load(str(fp32_graph), load_external_data=False).graph
    graph_inputs, graph_outputs = [i.name for i in loaded.input], {o.name for o in loaded.output}
    assert {"sentence_embedding"} < graph_outputs  # and token states, or a head's outputs
    for graph, compute in ((fp32_graph, trt.DataType.FLOAT), (fp16_graph, trt.DataType.HALF)):
        build = config_for(network_from_onnx(graph, "tensorrt-rtx"), FAST)
        network, config = build.network, build.config

        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
        assert [t.name for t in inputs] == graph_inputs
        assert all(t.dtype == trt.DataType.INT64 and tuple(t.shape) == (-1, -1) for t in inputs)
        assert set(outputs) == graph_outputs
        assert all(t.dtype == trt.DataType.FLOAT for t in outputs.values()), "I/O stays fp32 in the fp16 graph"

        assert _dtypes(network, "MATRIX_MULTIPLY") == {compute}
        for kept in ("NORMALIZATION", "SOFTMAX", "REDUCE"):  # fp32 even in the fp16 engine
            assert _dtypes(network, kept) <= {trt.DataType.FLOAT}, kept
        if load_zoo()[architecture].family == "decoder":  # RMSNorm: Pow/ReduceMean, statistics in fp32
            assert _dtypes(network, "REDUCE") == {trt.DataType.FLOAT}, "RMSNorm statistics stay fp32"
        else:
            assert _dtypes(network, "NORMALIZATION"), "LayerNorm must be one fused normalization layer"

        assert config.num_optimization_profiles == len(PROFILES)
        for profile, expected in zip(build.profiles, PROFILES, strict=True):
            for t in inputs:
                assert [tuple(s) for s in profile.get_shape(t.name)] == [expected.min, expected.opt, expected.max]
        assert config.num_compute_capabilities == 2
        sm = [config.get_compute_capability(i) for i in range(2)]
        assert sm == [trt.ComputeCapability.SM80, trt.ComputeCapability.SM86]
        assert config.builder_optimization_level == 0

        plan = plan_from_network(build)
        assert len(plan) > 100_000


def test_build_engine_adds_plans_to_an_artifact(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    from trt_embed.cli import main
    from trt_embed.manifest import Manifest, sha256_file

    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    args = ["build-engine", str(artifact), "--target-sm", "80,86", "--builder-opt-level", "0"]
    assert main([*args, "--profiles", "1x1:4x16:8x32,4x64"]) == 0
    manifest = Manifest.read(artifact)
    plans = [e for e in manifest.engines if e.kind == "tensorrt"]
    assert sorted(e.precision for e in plans) == ["fp16", "fp32"]
    fp16 = next(e for e in manifest.engines if e.kind == "onnx" and e.precision == "fp16")
    assert fp16.quality["cosine_min"] >= 0.999
    for plan in plans:
        assert plan.target == "sm_80,sm_86"
        assert plan.extra["flavour"] == "tensorrt-rtx" and plan.extra["tensorrt_version"] == trt.__version__
        assert [format_profile(p) for p in plan.profiles] == ["1x1:4x16:8x32", "1x1:4x64:4x64"]
        assert sha256_file(artifact / plan.file) == plan.sha256
        assert plan.file.startswith("engines/") and plan.file.endswith(".plan")
    assert main(args) == 0, "rebuilding replaces the plans"
    assert len([e for e in Manifest.read(artifact).engines if e.kind == "tensorrt"]) == 2
    assert not (artifact / "engines" / "timing.cache").exists(), "TensorRT-RTX has no timing cache"


@pytest.mark.parametrize("architecture", ["BertSpladeSparseEmbeddingModel", "BgeM3EmbeddingModel", "HF_ColBERT"])
def test_build_engine_for_sparse_and_multi_vector_heads(
    architecture: str, tiny_artifact: Callable[[str], Path], tmp_path: Path
) -> None:
    """The heads' plans carry every output of their graph (bge-m3: dense, sparse weights, ColBERT vectors)."""
    from trt_embed.exporter.plans import PlanOptions, build_engine

    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact(architecture), artifact)
    graph = onnx.load(str(artifact / "model.onnx"), load_external_data=False).graph
    plans = build_engine(artifact, PlanOptions(targets=["86"], profiles=PROFILES[:1], optimization_level=0))
    assert sorted(p.precision for p in plans) == ["fp16", "fp32"]
    for plan in plans:
        assert [o.name for o in plan.outputs] == [o.name for o in graph.output]
        assert len((artifact / plan.file).read_bytes()) > 100_000


def test_inspect_shows_plans(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    from trt_embed.describe import describe
    from trt_embed.exporter.plans import PlanOptions, build_engine

    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("RobertaModel"), artifact)
    build_engine(artifact, PlanOptions(precisions=("fp16",), targets=["89"], profiles=PROFILES, optimization_level=0))
    text = describe(artifact, layers=True)
    assert "engines/model.fp16.sm89.plan" in text and "target sm_89" in text
    assert f"tensorrt-rtx {trt.__version__}, from model.fp16.onnx" in text
    assert "matrix_multiply float16" in text and "normalization float32" in text
    assert "engine inspector unavailable" in text  # no GPU here
    assert json.loads(describe(artifact, as_json=True))["engines"][-1]["kind"] == "tensorrt"


def test_export_with_tensorrt_engine(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    from trt_embed.exporter import ExportOptions, export_model
    from trt_embed.exporter.plans import PlanOptions

    plans = PlanOptions(targets=["120"], optimization_level=0, max_batch=8)
    manifest = export_model(
        str(tiny_model("ModernBertModel")), tmp_path / "a", ExportOptions(engine="tensorrt", plans=plans)
    )
    files = {e.file: e for e in manifest.engines}
    assert set(files) == {
        "model.onnx",
        "model.fp16.onnx",
        "engines/model.fp32.sm120.plan",
        "engines/model.fp16.sm120.plan",
    }
    long = manifest.max_seq_length
    assert [format_profile(p) for p in files["engines/model.fp16.sm120.plan"].profiles] == [
        "1x1:8x64:8x128",
        f"1x1:8x{long}:8x{long}",
    ]


def test_unsupported_target_says_what_to_do(tiny_artifact: Callable[[str], Path]) -> None:
    build = network_from_onnx(tiny_artifact("BertModel") / "model.onnx", "tensorrt-rtx")
    with pytest.raises(ExportError, match=r"sm_90.*builds for .*sm_86.*NVIDIA TensorRT"):
        config_for(build, BuildOptions(profiles=PROFILES, targets=["90"]))


def test_build_errors_carry_tensorrt_messages(tiny_artifact: Callable[[str], Path]) -> None:
    artifact = tiny_artifact("BertModel")
    with pytest.raises(ExportError, match=r"cannot parse model.optimized.onnx"):  # onnxruntime-only fused ops
        network_from_onnx(artifact / "model.optimized.onnx", "tensorrt-rtx")
    turing = BuildOptions(profiles=PROFILES, targets=["75"], optimization_level=0, progress=False)
    with pytest.raises(ExportError, match=r"could not build a plan for sm_75: .*Turing"):
        plan_from_network(config_for(network_from_onnx(artifact / "model.onnx", "tensorrt-rtx"), turing))


def test_target_spelling() -> None:
    assert [normalize_sm(t) for t in ("86", "8.6", "sm86", "sm_86", "SM_120")] == ["sm_86"] * 4 + ["sm_120"]
    with pytest.raises(ExportError, match="write it like 86"):
        normalize_sm("ampere")


def test_default_profiles() -> None:
    assert [format_profile(p) for p in default_profiles(512, max_batch=64)] == ["1x1:64x64:64x128", "1x1:16x512:64x512"]
    assert [format_profile(p) for p in default_profiles(64, max_batch=8)] == ["1x1:8x32:8x64"]


def test_profile_spec() -> None:
    assert parse_profiles("1x1:32x64:64x128, 16x512") == [
        ShapeProfile(min=(1, 1), opt=(32, 64), max=(64, 128)),
        ShapeProfile(min=(1, 1), opt=(16, 512), max=(16, 512)),
    ]
    for bad in ("", "64", "1x1:64x64", "8x8:4x4:16x16", "0x1:1x1:1x1", "axb"):
        with pytest.raises(ExportError):
            parse_profiles(bad)
    with pytest.raises(ExportError, match="at most 128"):
        parse_profiles("8x256", max_seq_len=128)

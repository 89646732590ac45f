"""The packed CUDA graph the exporter adds beside the fused fp16 graph: what it holds, and that only CUDA
picks it. Its numbers are checked on a GPU (tests/gpu)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from trt_embed.artifact import Artifact
from trt_embed.exporter import ExportOptions, export_model
from trt_embed.manifest import Manifest, sha256_file
from trt_embed.runtime import Runtime


@pytest.fixture(scope="module")
def fp16_bert(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "artifact"
    export_model(str(tiny_model("BertModel")), out, ExportOptions(precision="fp16"))
    return out


def test_packed_graph_is_the_fused_fp16_graph_without_padded_attention(fp16_bert: Path) -> None:
    manifest = Manifest.read(fp16_bert)
    packed = [e for e in manifest.engines if e.extra.get("packed")]
    assert [e.file for e in packed] == ["model.optimized.fp16.packed.onnx"]
    entry = packed[0]
    source = next(e for e in manifest.engines if e.file == entry.extra["converted_from"])
    assert (entry.target, entry.precision, entry.optimized) == ("cuda", "fp16", True)
    assert source.target == "any" and source.precision == "fp16" and source.optimized
    assert entry.sha256 == sha256_file(fp16_bert / entry.file)
    assert entry.outputs == source.outputs and entry.inputs == source.inputs
    ops = Counter(n.op_type for n in onnx.load(str(fp16_bert / entry.file)).graph.node)
    fused_ops = Counter(n.op_type for n in onnx.load(str(fp16_bert / source.file)).graph.node)
    assert ops["RemovePadding"] == 1 and ops["RestorePadding"] == 1
    assert ops["PackedAttention"] == fused_ops["Attention"] > 0 and ops["Attention"] == 0
    assert ops["MatMul"] == fused_ops["MatMul"], "the same weights and matrix products, only attention packed"


def test_only_cuda_takes_the_packed_graph(fp16_bert: Path) -> None:
    artifact = Artifact.open(fp16_bert)
    assert artifact.onnx_entry(precision="fp16", device="cuda").file == "model.optimized.fp16.packed.onnx"
    assert artifact.onnx_entry(precision="fp16", device="cpu").target == "any"
    assert artifact.onnx_entry(precision="fp32", device="cuda").file == "model.optimized.onnx"
    with Runtime.load(fp16_bert, backend="onnxruntime-cpu", precision="fp16") as runtime:
        assert runtime.engine.entry.target == "any"
        assert runtime.embed(["a packed graph is never run on a CPU"]).shape[0] == 1


def test_cuda_engine_routes_short_or_ragged_batches_to_the_packed_graph(fp16_bert: Path) -> None:
    """The routing rule of `PackedOrPadded`, with two CPU sessions of the fused graph standing in for the two
    CUDA graphs (the packed one runs on CUDA only): results are the chosen graph's, unchanged."""
    import numpy as np

    from trt_embed.engines.base import Batch
    from trt_embed.engines.onnxruntime import (
        PACKED_MAX_WIDTH,
        PACKED_MIN_PADDING,
        OnnxRuntimeEngine,
        PackedOrPadded,
    )

    artifact = Artifact.open(fp16_bert)
    entry = artifact.onnx_entry(precision="fp16", device="cpu")
    path = artifact.engine_path(entry)
    engine = PackedOrPadded(OnnxRuntimeEngine(path, entry, threads=1), OnnxRuntimeEngine(path, entry, threads=1))

    def batch(lengths: list[int]) -> Batch:
        width = max(lengths)
        mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
        return Batch.padded({"input_ids": 5 * mask, "attention_mask": mask, "token_type_ids": 0 * mask})

    short = batch([PACKED_MAX_WIDTH // 2, 3])
    assert engine.choose(short) is engine.packed
    wide = PACKED_MAX_WIDTH + 1  # routing reads only the batch's shape: wider than this model runs is fine here
    assert engine.choose(batch([wide, wide])) is engine.padded
    assert engine.choose(batch([wide, wide - int(2 * PACKED_MIN_PADDING * wide) - 1])) is engine.packed
    assert engine.calls == {"packed": 2, "padded": 1}
    out = engine.infer(short, ["sentence_embedding"])["sentence_embedding"]
    want = engine.padded.infer(short, ["sentence_embedding"])["sentence_embedding"]
    np.testing.assert_array_equal(out, want)
    engine.close()
    assert not engine.health()

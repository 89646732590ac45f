"""The mixed-precision fp16 graph: what stays fp32, and that it matches fp32 on long padded batches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from trt_embed.exporter.onnx_graph import fp16_from_onnx
from trt_embed.manifest import Manifest
from trt_embed.zoo import load_zoo

# Known gap, kept visible: Gemma-2's fp16 graph reaches only cosine 0.995 on full-length random-id inputs (it is
# trained in bf16; the export check on calibration texts still accepts it). strict xfail: fixing it flips this.
# Longest batch checked: past 2048, where fp16 stops holding every integer position exactly (the rotary path must
# stay fp32), without the 8192-token attention matrices of the long-context models (13 GB of test memory).
LONGEST = 2304
KNOWN_FP16_GAPS = {"Gemma2Model": "Gemma-2 fp16 graph: cosine 0.995 on full-length random-id inputs"}


@pytest.mark.parametrize(
    "architecture",
    [
        pytest.param(a, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FP16_GAPS[a])) if a in KNOWN_FP16_GAPS else a
        for a in sorted(load_zoo())
    ],
)
def test_fp16_graph_matches_fp32(architecture: str, tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    artifact = tiny_artifact(architecture)
    kept = fp16_from_onnx(artifact / "model.onnx", tmp_path / "model.fp16.onnx")
    rms_norm = {"Pow", "ReduceMean"}  # decoders' RMSNorm, exported as primitive ops
    assert "LayerNormalization" in kept or rms_norm <= set(kept), "norm statistics stay fp32"
    assert "Softmax" in kept, "softmax stays fp32"
    import onnx

    converted = onnx.load(str(tmp_path / "model.fp16.onnx"))
    fp16_weights = [t for t in converted.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert fp16_weights, "the matmul weights are fp16"
    manifest = Manifest.read(artifact)
    if manifest.pooling.mode == "mean" and manifest.kind == "dense":
        assert {"ReduceSum", "Div"} <= set(kept), "mean pooling (sum over the sequence, divide) stays fp32"
    if architecture == "ModernBertModel":
        assert {"Cos", "Sin"} <= set(kept), "rotary positions stay fp32"
    session32 = ort.InferenceSession(str(artifact / "model.onnx"))
    session16 = ort.InferenceSession(str(tmp_path / "model.fp16.onnx"))
    seq = min(Manifest.read(artifact).max_seq_length, LONGEST)
    rng = np.random.default_rng(0)
    mask = np.ones((3, seq), dtype=np.int64)
    mask[1, seq // 3 :] = 0
    feeds = {"input_ids": rng.integers(5, 1000, (3, seq)), "attention_mask": mask}
    for i in session32.get_inputs():
        if i.name not in feeds:  # VLM decoders take embeddings and positions (Qwen: three rows of them)
            shape = [{"batch": 3, "sequence": seq}.get(d, d) if isinstance(d, str) else d for d in i.shape]
            if i.name == "inputs_embeds" or i.name == "deepstack_embeds":
                feeds[i.name] = rng.normal(0, 0.5, shape).astype(np.float32)
            elif i.name == "position_ids":
                feeds[i.name] = np.broadcast_to(np.arange(seq), shape).astype(np.int64).copy()
            else:
                feeds[i.name] = np.zeros(shape, np.int64)
    if "pooling_mask" in feeds:
        feeds["pooling_mask"] = mask
    feeds = {k: v for k, v in feeds.items() if k in {i.name for i in session32.get_inputs()}}  # SigLIP: no mask
    want, got = (s.run(["sentence_embedding"], feeds)[0] for s in (session32, session16))
    assert got.dtype == np.float32, "inputs and outputs keep their dtypes"
    cosine = (want * got).sum(-1) / np.linalg.norm(want, axis=-1) / np.linalg.norm(got, axis=-1)
    assert cosine.min() >= 0.999


def _shape_fed_range_graph() -> object:
    """x -> MatMul -> y; y's shape (read twice) -> a Range -> ReduceSum added to y @ W: index math over a tensor
    that the fp16 graph computes in fp16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    consts = {
        "W": np.random.default_rng(0).random((8, 8), dtype=np.float32),
        "i0": np.array(0, np.int64),
        "i1": np.array(1, np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
        helper.make_node("Shape", ["y"], ["sa"], name="shape_a"),
        helper.make_node("Shape", ["y"], ["sb"], name="shape_b"),
        helper.make_node("Gather", ["sa", "i1"], ["d1"], name="g1"),
        helper.make_node("Gather", ["sb", "i0"], ["d0"], name="g0"),
        helper.make_node("Mul", ["d0", "d1"], ["n"], name="mul"),
        helper.make_node("Range", ["i0", "n", "i1"], ["r"], name="range"),
        helper.make_node("Cast", ["r"], ["rf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["rf"], ["rs"], name="rsum", keepdims=0),
        helper.make_node("MatMul", ["y", "W"], ["z"], name="mm2"),
        helper.make_node("Add", ["z", "rs"], ["out"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 8])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_index_math_stays_fp32_without_keeping_shape_reads(tmp_path: Path) -> None:
    """The Range's index math stays fp32, but the Shape nodes that only read y's shape are not kept: keeping them
    made the converter cast y once per Shape (onnxruntime 1.31 names each copy alike: an invalid graph)."""
    import onnx

    onnx.save(_shape_fed_range_graph(), str(tmp_path / "g.onnx"))
    kept = fp16_from_onnx(tmp_path / "g.onnx", tmp_path / "g16.onnx")
    assert {"Range", "Mul", "Gather", "ReduceSum"} <= set(kept) and "Shape" not in kept
    x = np.random.default_rng(1).random((3, 8), dtype=np.float32)
    want, got = (ort.InferenceSession(str(tmp_path / f)).run(None, {"x": x})[0] for f in ("g.onnx", "g16.onnx"))
    np.testing.assert_allclose(got, want, rtol=2e-2)


def test_repeated_cast_nodes_are_collapsed() -> None:
    """A converter that adds one identical Cast per consumer (onnxruntime 1.31) still yields a loadable graph."""
    from onnx import helper

    from trt_embed.exporter.onnx_graph import _unique_nodes

    model = _shape_fed_range_graph()
    cast = helper.make_node("Cast", ["y"], ["y_cast_to_fp32"], name="y_cast_to_fp32_node", to=1)
    model.graph.node.extend([cast, cast])  # type: ignore[attr-defined]
    _unique_nodes(model)
    names = [n.name for n in model.graph.node]  # type: ignore[attr-defined]
    assert names.count("y_cast_to_fp32_node") == 1 and len(names) == len(set(names))

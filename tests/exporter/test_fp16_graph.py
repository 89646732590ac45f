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

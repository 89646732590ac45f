"""Decoder graphs with onnxruntime's GroupQueryAttention / MultiHeadAttention (exporter/models/decoder_gqa.py),
run by onnxruntime's CPU kernels of the ops against the transformers model itself: left- and right-padded
batches equal each input alone; the exporter ships the fp16 form for onnxruntime-cuda only. tests/gpu runs it
on a GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.exporter import ExportOptions, export_model
from trt_embed.manifest import Manifest
from trt_embed.runtime import Runtime
from trt_embed.zoo import zoo_entry

LENGTHS = (9, 23, 1, 16)


def _batch(lengths: tuple[int, ...], side: str, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(len(lengths) + len(side))
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, cols] = rng.integers(3, vocab, n)
        mask[row, cols] = 1
    return ids, mask


@pytest.mark.parametrize("architecture", ["Qwen3Model", "LlamaModel", "GritLM"])
def test_gqa_graph_matches_transformers(architecture: str, tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    from trt_embed.exporter.graph import EmbeddingGraph
    from trt_embed.exporter.models.decoder import decoder_encoder, load_base_model
    from trt_embed.exporter.models.decoder_gqa import export_gqa_graph, supported
    from trt_embed.exporter.onnx_graph import onnx_from_graph

    source = tiny_model(architecture)
    entry = zoo_entry(architecture)
    encoder = decoder_encoder(source, entry, trust_remote_code=False)
    assert supported(encoder, 512) is None
    graph = EmbeddingGraph(encoder, "last", [], uses_token_type_ids=False, separate_pooling_mask=False).eval()
    vocab = int(encoder.model.config.vocab_size)
    example = tuple(torch.from_numpy(a) for a in _batch((5, 3), "left", vocab))
    export_gqa_graph(graph, example, tmp_path / "gqa.onnx", torch.float32, onnx_from_graph)
    session = ort.InferenceSession(str(tmp_path / "gqa.onnx"), providers=["CPUExecutionProvider"])
    model = load_base_model(source, entry, trust_remote_code=False)  # independent: its own masks and positions
    ops = {n.op_type for n in __import__("onnx").load(str(tmp_path / "gqa.onnx")).graph.node}
    assert ("MultiHeadAttention" if encoder.bidirectional else "GroupQueryAttention") in ops
    for side in ("left", "right"):
        ids, mask = _batch(LENGTHS, side, vocab)
        pooled, states = session.run(None, {"input_ids": ids, "attention_mask": mask})
        for row in range(len(LENGTHS)):
            real = mask[row].astype(bool)
            alone = torch.from_numpy(ids[row, real])[None]
            # bidirectional (GritLM): an all-visible 4D mask of our own, as tests/exporter/test_decoders.py does
            own = torch.zeros((1, 1, len(alone[0]), len(alone[0]))) if encoder.bidirectional else None
            with torch.no_grad():
                want = model(input_ids=alone, attention_mask=own).last_hidden_state[0].numpy()
            np.testing.assert_allclose(states[row, real], want, atol=2e-5, rtol=1e-4)
            np.testing.assert_allclose(pooled[row], want[-1], atol=2e-5, rtol=1e-4)


def test_fp16_gqa_graph_is_shipped_for_cuda_only_when_asked(
    tiny_model: Callable[[str], Path], tmp_path: Path, corpus: list[str]
) -> None:
    out = tmp_path / "artifact"
    export_model(str(tiny_model("Qwen3ForCausalLM")), out, ExportOptions(precision="fp16", fused_attention=True))
    manifest = Manifest.read(out)
    gqa = next(e for e in manifest.engines if e.file == "model.gqa.fp16.onnx")
    assert gqa.target == "cuda" and gqa.precision == "fp16" and gqa.extra["attention"] == "GroupQueryAttention"
    assert gqa.quality["cosine_min"] >= 0.999, gqa.quality
    with Runtime.load(out, backend="onnxruntime-cpu", precision="fp16") as runtime:
        assert runtime.engine.entry.file == "model.fp16.onnx"  # the CPU keeps the portable graph
        plain = runtime.embed(corpus[:8])
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / gqa.file), providers=["CPUExecutionProvider"])
    with Runtime.load(out, backend="onnxruntime-cpu", precision="fp32") as runtime:
        tokens = runtime.tokenize(corpus[:8])
        exact = runtime.embed(corpus[:8])
    ids, mask = _batch(tuple(tokens.lengths), "left", 4)
    for row, row_ids in enumerate(tokens.ids):
        ids[row, mask[row].astype(bool)] = row_ids
    got = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    assert (got * exact).sum(1).min() >= 0.999
    assert (plain * exact).sum(1).min() >= 0.999


def test_unsupported_decoders_keep_the_plain_graph(tiny_model: Callable[[str], Path]) -> None:
    from trt_embed.exporter.models.decoder import decoder_encoder
    from trt_embed.exporter.models.decoder_gqa import supported

    gemma = decoder_encoder(tiny_model("Gemma3TextModel"), zoo_entry("Gemma3TextModel"), trust_remote_code=False)
    assert supported(gemma, 512) == "sliding windows (9 tokens) shorter than the inputs (512 tokens)"
    mistral = decoder_encoder(tiny_model("MistralModel"), zoo_entry("MistralModel"), trust_remote_code=False)
    assert supported(mistral, 16) is None  # its 16-token window never binds on inputs of 16 tokens
    assert supported(mistral, 17) == "sliding windows (16 tokens) shorter than the inputs (17 tokens)"
    gemma2 = decoder_encoder(tiny_model("Gemma2Model"), zoo_entry("Gemma2Model"), trust_remote_code=False)
    assert supported(gemma2, 16) == "attention logit soft-capping"


def test_16_bit_graphs_keep_exact_rotary_frequencies(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """Weights in 16 bits, the rotary inverse frequencies in fp32 as the model has them (rounded, they would turn
    the rotary angles of late positions by tenths of a radian)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from trt_embed.exporter.graph import EmbeddingGraph
    from trt_embed.exporter.models.decoder import decoder_encoder
    from trt_embed.exporter.models.decoder_gqa import export_gqa_graph
    from trt_embed.exporter.onnx_graph import onnx_from_graph

    encoder = decoder_encoder(tiny_model("Qwen3Model"), zoo_entry("Qwen3Model"), trust_remote_code=False)
    graph = EmbeddingGraph(encoder, "last", [], uses_token_type_ids=False, separate_pooling_mask=False).eval()
    frequencies = encoder.model.rotary_emb.inv_freq.numpy()
    example = tuple(torch.from_numpy(a) for a in _batch((5, 3), "left", 64))
    for dtype, elem in ((torch.float16, onnx.TensorProto.FLOAT16), (torch.bfloat16, onnx.TensorProto.BFLOAT16)):
        export_gqa_graph(graph, example, tmp_path / "g.onnx", dtype, onnx_from_graph)
        model = onnx.load(str(tmp_path / "g.onnx"))
        assert {t.data_type for t in model.graph.initializer} == {elem}
        constants = [
            numpy_helper.to_array(a.t) for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
        ]
        assert any(c.dtype == np.float32 and np.array_equal(c.ravel(), frequencies) for c in constants)
    assert encoder.model.embed_tokens.weight.dtype == torch.float32  # the exporter's model is left as it was

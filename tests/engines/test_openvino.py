"""openvino-cpu: fp32 matches sentence-transformers, bf16 stays close, static int8 is picked and accurate,
and every refusal says why."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from trt_embed.engines import openvino
from trt_embed.engines.base import Batch
from trt_embed.engines.cpu import CpuFacts, cpu_facts
from trt_embed.errors import ArtifactError, BackendUnavailable, InvalidRequest
from trt_embed.runtime import Runtime
from trt_embed.zoo import load_zoo

pytest.importorskip("openvino")
needs_bf16 = pytest.mark.skipif("BF16" not in openvino.cpu_capabilities(), reason="this CPU has no bf16 instructions")


def test_fp32_matches_sentence_transformers(
    minilm_artifact: Path, corpus: list[str], minilm_reference: np.ndarray
) -> None:
    with Runtime.load(minilm_artifact, backend="openvino-cpu") as runtime:
        assert runtime.backend == "openvino-cpu" and runtime.engine.entry.file == "model.onnx"
        got = runtime.embed(corpus[: len(minilm_reference)])
    assert (got * minilm_reference).sum(-1).min() >= 0.99999


@needs_bf16
def test_bf16_is_close_but_really_bf16(minilm_artifact: Path, corpus: list[str], minilm_reference: np.ndarray) -> None:
    with Runtime.load(minilm_artifact, precision="bf16") as runtime:
        assert runtime.backend == "openvino-cpu", runtime.backend_reason
        assert "bf16 compute" in runtime.backend_reason
        got = runtime.embed(corpus[: len(minilm_reference)])
    cos = (got * minilm_reference).sum(-1)
    assert cos.mean() >= 0.99998 and cos.min() >= 0.9999
    assert np.abs(got - minilm_reference).max() > 1e-5, "bf16 output equals fp32: bf16 math was not used"


VNNI = CpuFacts("a CPU with VNNI", 2, ("avx2", "avx512f", "avx512_vnni"))
AVX2_ONLY = CpuFacts("a CPU without VNNI", 2, ("avx2",))


def test_int8_saturates_on_x86_without_vnni_only() -> None:
    assert AVX2_ONLY.int8_saturates and not VNNI.int8_saturates
    assert not CpuFacts("x86 with AVX-VNNI", 2, ("avx2", "avx_vnni")).int8_saturates
    assert not CpuFacts("Sapphire Rapids", 2, ("avx2", "avx512f", "amx_int8")).int8_saturates
    assert not CpuFacts("an ARM server", 2, ("asimd", "asimddp", "i8mm")).int8_saturates


def test_int8_is_refused_where_dot_products_saturate(minilm_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino, "cpu_facts", lambda: AVX2_ONLY)
    with pytest.raises(BackendUnavailable, match="no VNNI or AMX"):
        Runtime.load(minilm_artifact, backend="openvino-cpu", precision="int8")
    with Runtime.load(minilm_artifact, precision="int8") as runtime:
        assert runtime.backend == "onnxruntime-cpu" and runtime.engine.entry.file == "model.int8.onnx"
        assert "no VNNI or AMX" in runtime.backend_reason


@pytest.mark.skipif(cpu_facts().int8_saturates, reason="this x86 CPU has no VNNI: openvino-cpu refuses int8 here")
def test_auto_int8_runs_the_static_graph_on_openvino(
    minilm_artifact: Path, corpus: list[str], minilm_reference: np.ndarray
) -> None:
    with Runtime.load(minilm_artifact, precision="int8") as runtime:
        assert runtime.backend == "openvino-cpu", runtime.backend_reason
        assert runtime.engine.entry.file == "model.int8-static.onnx"
        assert runtime.engine.entry.extra["int8_scheme"] == "static"
        got = runtime.embed(corpus[: len(minilm_reference)])
    cos = (got * minilm_reference).sum(-1)
    assert cos.mean() >= 0.995 and cos.min() >= 0.97
    with Runtime.load(minilm_artifact, backend="onnxruntime-cpu", precision="int8") as dynamic:
        assert dynamic.engine.entry.file == "model.int8.onnx", "onnxruntime keeps the dynamic graph"


def test_concurrent_calls_match_one_by_one(tiny_artifact: Callable[[str], Path]) -> None:
    texts = [" ".join(["word"] * n) for n in range(1, 40, 3)]
    with Runtime.load(tiny_artifact("BertModel"), backend="openvino-cpu", workers=2, max_batch_size=2) as runtime:
        single = np.concatenate(
            [
                runtime.engine_for().infer(_feeds(runtime, t), ["sentence_embedding"])["sentence_embedding"]
                for t in texts
            ]
        )
        with ThreadPoolExecutor(6) as pool:
            together = np.stack(list(pool.map(lambda t: runtime.embed([t], normalize=False)[0], texts)))
    np.testing.assert_allclose(together, single, atol=1e-5)


def _feeds(runtime: Runtime, text: str) -> Batch:
    ids = np.array([runtime.tokenize([text]).ids[0]], dtype=np.int64)
    return Batch.padded({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})


def test_bf16_is_refused_on_onnxruntime(tiny_artifact: Callable[[str], Path]) -> None:
    with pytest.raises(InvalidRequest, match="bf16 runs on the openvino-cpu backend only"):
        Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu", precision="bf16")


def test_missing_openvino_names_the_install_line(
    tiny_artifact: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino, "available", lambda: False)
    with pytest.raises(BackendUnavailable, match=r"pip install 'trt-embed\[openvino\]'"):
        Runtime.load(tiny_artifact("BertModel"), backend="openvino-cpu")


def test_bf16_without_cpu_support_is_refused(
    tiny_artifact: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino, "cpu_capabilities", lambda: ["FP32", "INT8"])
    with pytest.raises(BackendUnavailable, match="no bf16 matrix instructions"):
        Runtime.load(tiny_artifact("BertModel"), precision="bf16")


def test_int8_without_a_static_graph(minilm_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino, "cpu_facts", lambda: VNNI)  # the same on every CPU
    copy = tmp_path / "artifact"
    shutil.copytree(minilm_artifact, copy)
    manifest_path = copy / "trt_embed.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["engines"] = [e for e in manifest["engines"] if e["file"] != "model.int8-static.onnx"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="static activation scales"):
        Runtime.load(copy, backend="openvino-cpu", precision="int8")
    with Runtime.load(copy, precision="int8") as runtime:  # auto falls back to onnxruntime's dynamic graph
        assert runtime.backend == "onnxruntime-cpu" and runtime.engine.entry.file == "model.int8.onnx"
    monkeypatch.setattr(openvino, "available", lambda: False)
    with Runtime.load(minilm_artifact, precision="int8") as runtime:
        assert runtime.backend == "onnxruntime-cpu"
        assert "OpenVINO is not installed" in runtime.backend_reason


@pytest.mark.parametrize("architecture", sorted(load_zoo()))
def test_every_architecture_matches_onnxruntime(architecture: str, tiny_artifact: Callable[[str], Path]) -> None:
    """OpenVINO's ONNX reader takes every zoo graph (encoders, rotary, MoE, decoders with left padding) and
    computes what onnxruntime computes, in fp32 and padded batches."""
    texts = ["a short one", "a somewhat longer input text, with punctuation and numbers 12 34", "x"]
    artifact = tiny_artifact(architecture)
    with Runtime.load(artifact, backend="onnxruntime-cpu") as reference:
        task = "embed" if "embed" in reference.tasks else reference.tasks[0]  # ColBERT: token vectors only
        want = reference.encode(texts, pooling_task=task, normalize=False)
    with Runtime.load(artifact, backend="openvino-cpu", latency_engine=False) as runtime:
        got = runtime.encode(texts, pooling_task=task, normalize=False)
    for got_rows, want_rows in zip(got, want, strict=True):
        np.testing.assert_allclose(got_rows, want_rows, rtol=1e-4, atol=1e-4)


def test_token_embeddings_match_onnxruntime(minilm_artifact: Path) -> None:
    texts = ["hello world", "a much longer sentence with many more tokens in it"]
    with Runtime.load(minilm_artifact, backend="onnxruntime-cpu") as reference:
        want = reference.encode(texts, pooling_task="token_embed")
    with Runtime.load(minilm_artifact, backend="openvino-cpu") as runtime:
        got = runtime.encode(texts, pooling_task="token_embed")
    assert [g.shape for g in got] == [w.shape for w in want] == [(4, 384), (13, 384)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4)

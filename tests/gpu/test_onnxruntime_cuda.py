"""onnxruntime-cuda on a real GPU: the packed fp16 graph, the fused fp32 graph and the decoder GroupQueryAttention
graphs (fp16 through the runtime, bf16 directly) against fp32 PyTorch, batched
against single, through the whole runtime (two calls in flight). Skipped where there is no CUDA device;
run on the GPU machine whenever GPU code changes: `python -m pytest -m gpu tests/gpu`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.exporter import ExportOptions, export_model
from trt_embed.manifest import Manifest
from trt_embed.runtime import Runtime

pytestmark = pytest.mark.gpu


def _cuda_missing() -> str | None:
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:
        return str(exc)
    if not torch.cuda.is_available():
        return "no CUDA device"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDA execution provider (install onnxruntime-gpu)"
    return None


@pytest.fixture(scope="module")
def artifact(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    reason = _cuda_missing()
    if reason:
        pytest.skip(f"needs a CUDA GPU and onnxruntime-gpu: {reason}")
    source = tiny_model("BertModel")
    out = tmp_path_factory.mktemp("cuda") / "artifact"
    export_model(str(source), out, ExportOptions(precision="fp16"))
    return source, out


def _torch_reference(source: Path, manifest: Manifest, ids: list[list[int]]) -> np.ndarray:
    """fp32 PyTorch on the same token ids, pooled as the manifest says (mean or CLS), L2-normalized."""
    import torch
    import transformers

    model = transformers.AutoModel.from_pretrained(str(source)).eval()
    rows = []
    with torch.no_grad():
        for row in ids:
            states = model(input_ids=torch.tensor([row])).last_hidden_state[0]
            pooled = states.mean(0) if manifest.pooling.mode == "mean" else states[0]
            rows.append(torch.nn.functional.normalize(pooled, dim=0).numpy())
    return np.stack(rows)


def _texts(corpus: list[str]) -> list[str]:
    return [*corpus[:96], "short", " ".join(corpus[96:110])]  # the last one runs past the model's limit


def test_packed_fp16_graph_matches_pytorch(artifact: tuple[Path, Path], corpus: list[str]) -> None:
    source, out = artifact
    texts = _texts(corpus)
    with Runtime.load(out, backend="onnxruntime-cuda", precision="fp16") as runtime:
        assert runtime.engine.entry.file == "model.optimized.fp16.packed.onnx"
        assert runtime.pool.workers == 2
        ids = runtime.tokenize(texts).ids
        got = runtime.embed(texts)
        want = _torch_reference(source, Manifest.read(out), ids)
        cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1)
        assert cosine.min() >= 0.9999, cosine.min()
        single = np.concatenate([runtime.embed([t]) for t in texts[:12]])
        np.testing.assert_allclose(got[:12], single, atol=3e-3)
        from_ids = runtime.embed(ids)
        np.testing.assert_allclose(from_ids, got, atol=3e-3)


def test_fused_fp32_graph_matches_pytorch(artifact: tuple[Path, Path], corpus: list[str]) -> None:
    source, out = artifact
    texts = _texts(corpus)
    with Runtime.load(out, backend="onnxruntime-cuda", precision="fp32") as runtime:
        assert runtime.engine.entry.file == "model.optimized.onnx"
        got = runtime.embed(texts)
        want = _torch_reference(source, Manifest.read(out), runtime.tokenize(texts).ids)
        assert ((got * want).sum(1) / np.linalg.norm(got, axis=1)).min() >= 0.99999


@pytest.fixture(scope="module")
def decoder_artifact(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    reason = _cuda_missing()
    if reason:
        pytest.skip(f"needs a CUDA GPU and onnxruntime-gpu: {reason}")
    source = tiny_model("Qwen3ForCausalLM")
    out = tmp_path_factory.mktemp("cuda-decoder") / "artifact"
    export_model(str(source), out, ExportOptions(precision="fp16", fused_attention=True))
    return source, out


def _decoder_reference(source: Path, ids: list[list[int]]) -> np.ndarray:
    """fp32 transformers on each input alone, last-token pooling, L2-normalized."""
    import torch
    import transformers

    model = transformers.AutoModel.from_pretrained(str(source)).eval()
    with torch.no_grad():
        rows = [model(input_ids=torch.tensor([row])).last_hidden_state[0, -1] for row in ids]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1).numpy()


def test_decoder_gqa_fp16_graph_matches_pytorch(decoder_artifact: tuple[Path, Path], corpus: list[str]) -> None:
    source, out = decoder_artifact
    texts = _texts(corpus)
    with Runtime.load(out, backend="onnxruntime-cuda", precision="fp16") as runtime:
        assert runtime.engine.entry.file == "model.gqa.fp16.onnx"
        ids = runtime.tokenize(texts).ids
        got = runtime.embed(texts)
        want = _decoder_reference(source, ids)
        assert ((got * want).sum(1) / np.linalg.norm(got, axis=1)).min() >= 0.9999
        single = np.concatenate([runtime.embed([t]) for t in texts[:12]])
        np.testing.assert_allclose(got[:12], single, atol=3e-3)
        for side in ("left", "right"):  # the graph rolls left-padded rows itself
            runtime.manifest.tokenizer.padding_side = side
            np.testing.assert_allclose(runtime.embed(texts), got, atol=3e-3)


def test_decoder_gqa_bf16_graph_matches_pytorch(
    decoder_artifact: tuple[Path, Path], corpus: list[str], tmp_path: Path
) -> None:
    import onnxruntime as ort
    import torch

    from trt_embed.exporter.graph import EmbeddingGraph
    from trt_embed.exporter.models.decoder import decoder_encoder
    from trt_embed.exporter.models.decoder_gqa import export_gqa_graph
    from trt_embed.exporter.onnx_graph import onnx_from_graph
    from trt_embed.zoo import zoo_entry

    source, out = decoder_artifact
    encoder = decoder_encoder(source, zoo_entry("Qwen3ForCausalLM"), trust_remote_code=False)
    graph = EmbeddingGraph(encoder, "last", [], uses_token_type_ids=False, separate_pooling_mask=False).eval()
    example = (torch.tensor([[0, 0, 7, 8], [5, 6, 7, 8]]), torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]))
    export_gqa_graph(graph, example, tmp_path / "bf16.onnx", torch.bfloat16, onnx_from_graph)
    session = ort.InferenceSession(str(tmp_path / "bf16.onnx"), providers=["CUDAExecutionProvider"])
    with Runtime.load(out, backend="onnxruntime-cpu") as runtime:
        batch = runtime.tokenize(_texts(corpus))
    width = max(batch.lengths)
    ids = np.zeros((len(batch.ids), width), np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(batch.ids):
        ids[row, width - len(tokens) :], mask[row, width - len(tokens) :] = tokens, 1
    got = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)
    want = _decoder_reference(source, batch.ids)
    assert ((got * want).sum(1) / np.linalg.norm(got, axis=1)).min() >= 0.999


def test_decoder_mha_fp16_graph_matches_cpu_fp32(
    tiny_model: Callable[[str], Path], tmp_path: Path, corpus: list[str]
) -> None:
    """A bidirectional decoder (GritLM: MultiHeadAttention, prompt left out of pooling) on CUDA against the fp32
    graph on CPU, which tests/exporter/test_decoders.py checks against PyTorch."""
    reason = _cuda_missing()
    if reason:
        pytest.skip(f"needs a CUDA GPU and onnxruntime-gpu: {reason}")
    out = tmp_path / "artifact"
    export_model(str(tiny_model("GritLM")), out, ExportOptions(precision="fp16", fused_attention=True))
    texts = _texts(corpus)
    with Runtime.load(out, backend="onnxruntime-cpu", precision="fp32") as runtime:
        want = runtime.embed(texts, prompt_name="query")
    with Runtime.load(out, backend="onnxruntime-cuda", precision="fp16") as runtime:
        assert runtime.engine.entry.file == "model.mha.fp16.onnx"
        got = runtime.embed(texts, prompt_name="query")
        single = np.concatenate([runtime.embed([t], prompt_name="query") for t in texts[:12]])
    assert (got * want).sum(1).min() >= 0.9999
    np.testing.assert_allclose(got[:12], single, atol=3e-3)

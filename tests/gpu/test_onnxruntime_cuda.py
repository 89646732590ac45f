"""onnxruntime-cuda on a real GPU: the packed fp16 graph and the fused fp32 graph against fp32 PyTorch, batched
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

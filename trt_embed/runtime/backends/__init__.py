"""Engine backends and the `auto` choice between them."""

from __future__ import annotations

import dataclasses

from trt_embed.errors import BackendUnavailable, InvalidRequest
from trt_embed.runtime.artifact import BACKENDS, Artifact
from trt_embed.runtime.backends.base import Engine


@dataclasses.dataclass
class Choice:
    engine: Engine
    backend: str
    reason: str


def open_engine(
    artifact: Artifact,
    *,
    backend: str = "auto",
    precision: str = "fp32",
    variant: str = "base",
    threads: int | None = None,
    verify: bool = True,
) -> Choice:
    """Open the engine for `backend`; `auto` takes the fastest one that can run here and says why."""
    if backend not in BACKENDS:
        raise InvalidRequest(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}", "backend")
    from trt_embed.runtime.backends.onnxruntime import OnnxRuntimeEngine, available_providers

    if backend == "tensorrt":
        raise BackendUnavailable("the tensorrt backend is not available in this build; use onnxruntime-cpu or auto")
    entry = artifact.onnx_entry(variant=variant, precision=precision)
    path = artifact.engine_path(entry, verify=verify)
    if backend == "onnxruntime-cuda" or (backend == "auto" and "CUDAExecutionProvider" in available_providers()):
        engine = OnnxRuntimeEngine(path, entry, device="cuda", threads=threads)
        reason = "requested" if backend != "auto" else "onnxruntime has the CUDA execution provider"
        return Choice(engine, "onnxruntime-cuda", reason)
    engine = OnnxRuntimeEngine(path, entry, device="cpu", threads=threads)
    reason = "requested" if backend != "auto" else "no GPU execution provider or TensorRT plan usable here"
    return Choice(engine, "onnxruntime-cpu", f"{reason}; running {entry.file}")

"""onnxruntime backends: `onnxruntime-cpu` (the embedded default) and `onnxruntime-cuda`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.engines.base import Arrays, Engine, Outputs
from trt_embed.errors import BackendUnavailable, EngineError
from trt_embed.manifest import EngineEntry


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def default_threads() -> int:
    """Physical cores if known, else logical CPUs: onnxruntime's intra-op pool scales with cores."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
        if cores:
            return int(cores)
    except ImportError:
        pass
    return os.cpu_count() or 1


class OnnxRuntimeEngine(Engine):
    def __init__(
        self, path: Path, entry: EngineEntry, *, device: str = "cpu", threads: int | None = None, device_id: int = 0
    ) -> None:
        super().__init__(entry)
        import onnxruntime as ort

        self.name = f"onnxruntime-{device}"
        self.device = "cuda" if device == "cuda" else "cpu"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        providers: list[Any]
        if device == "cuda":
            if "CUDAExecutionProvider" not in available_providers():
                raise BackendUnavailable(
                    "onnxruntime-cuda needs onnxruntime-gpu with a CUDA device; "
                    "install it with: pip install 'trt-embed[gpu]'"
                )
            providers = [
                ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC", "device_id": device_id}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise EngineError(f"onnxruntime cannot load {path}: {exc}") from exc
        graph_inputs = {i.name for i in self._session.get_inputs()}
        self.input_names = [n for n in self.input_names if n in graph_inputs] or sorted(graph_inputs)

    def _infer(self, inputs: Arrays, outputs: list[str]) -> Outputs:
        try:
            results = self._session.run(outputs, dict(inputs))
        except Exception as exc:
            raise EngineError(f"{self.name} inference failed: {exc}") from exc
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(outputs, results, strict=True)}

    def close(self) -> None:
        super().close()
        self._session = None

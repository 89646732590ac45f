"""onnxruntime backends: `onnxruntime-cpu` (the embedded default) and `onnxruntime-cuda`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.engines.base import Arrays, Batch, Engine, Outputs
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
        # On CUDA the CPU only launches kernels: one thread that sleeps while it waits, so the session does not
        # spin a core per thread against the tokenizer and the other calls in flight.
        options.intra_op_num_threads = 1 if device == "cuda" else threads or default_threads()
        options.inter_op_num_threads = 1
        if device == "cuda":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


# Measured on an H200 with BERT-base shapes (benchmarks/bench-gpu-h200-*.log): onnxruntime's packed attention
# beats its fused padded attention on short inputs even with little padding (corpus mix, mean 59 tokens: 1.95M
# vs 1.86M tokens/s), and loses on long unpadded ones (512 tokens: 1.75M vs 2.11M).
PACKED_MAX_WIDTH = 256  # batches no wider than this run packed
PACKED_MIN_PADDING = 0.25  # wider batches run packed only when at least this share of them is padding


class PackedOrPadded(Engine):
    """onnxruntime-cuda over the two forms of one graph, chosen per batch: the packed graph (no padded token
    computed) for short or ragged batches, the fused padded graph for long, evenly filled ones."""

    name = "onnxruntime-cuda"
    device = "cuda"

    def __init__(self, packed: OnnxRuntimeEngine, padded: OnnxRuntimeEngine) -> None:
        super().__init__(packed.entry)
        self.packed, self.padded = packed, padded
        self.input_names = packed.input_names
        self.calls = {"packed": 0, "padded": 0}

    def choose(self, batch: Batch) -> OnnxRuntimeEngine:
        rows, width = batch.shape
        padding = 1 - sum(batch.lengths) / max(rows * width, 1)
        packed = width <= PACKED_MAX_WIDTH or padding >= PACKED_MIN_PADDING
        self.calls["packed" if packed else "padded"] += 1
        return self.packed if packed else self.padded

    def infer(self, batch: Batch, outputs: Sequence[str]) -> Outputs:
        feeds = self._checked(batch, outputs)  # both graphs take the same inputs: checked once, run on the chosen
        return self.choose(batch)._infer(feeds, list(outputs))

    def _infer(self, inputs: Arrays, outputs: list[str]) -> Outputs:
        return self.packed._infer(inputs, outputs)

    def health(self) -> bool:
        return super().health() and self.packed.health() and self.padded.health()

    def close(self) -> None:
        super().close()
        self.packed.close()
        self.padded.close()

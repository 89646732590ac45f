"""`openvino-cpu`: ONNX graphs through OpenVINO's CPU plugin.

It runs the fp32 graph exactly (`f32`) or with bf16 matrix math on CPUs that have it (AMX / AVX512-BF16), and
runs statically quantized int8 graphs (QDQ) with VNNI/AMX int8 kernels, which onnxruntime's CPU provider
executes much more slowly.
"""

from __future__ import annotations

import functools
import queue
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.engines.base import Arrays, Engine, Outputs
from trt_embed.engines.cpu import cpu_facts
from trt_embed.engines.onnxruntime import default_threads
from trt_embed.errors import BackendUnavailable, EngineError
from trt_embed.manifest import EngineEntry

INSTALL = "pip install 'trt-embed[openvino]'"
COMPUTE = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # precision -> OpenVINO inference precision


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def cpu_capabilities() -> list[str]:
    """OpenVINO's CPU capabilities here (`BF16`, `INT8`, ...); empty without OpenVINO. A hardware fact, asked
    once: every engine opened (variants, the latency engine) would otherwise start a new OpenVINO core for it."""
    if not available():
        return []
    import openvino

    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def why_not_here(precision: str) -> str | None:
    """Why `openvino-cpu` cannot run `precision` on this machine, or None if it can."""
    if not available():
        return f"OpenVINO is not installed ({INSTALL})"
    if precision not in COMPUTE:
        return f"openvino-cpu runs fp32, bf16 and int8, not {precision}"
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        return "this CPU has no bf16 matrix instructions (AMX or AVX512-BF16); OpenVINO would emulate bf16 slowly"
    if precision == "int8" and cpu_facts().int8_saturates:
        return (
            "this x86 CPU has no VNNI or AMX: OpenVINO's int8 dot products saturate 16-bit sums there and lose "
            "accuracy (static int8 below the int8 rule)"
        )
    return None


class OpenVinoEngine(Engine):
    """One compiled model with `streams` parallel inference streams of `threads` threads each; concurrent
    `infer` calls (the scheduler's workers) each take a free infer request, so calls run side by side."""

    name = "openvino-cpu"

    def __init__(self, path: Path, entry: EngineEntry, *, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(entry)
        reason = why_not_here(precision)
        if reason is not None:
            raise BackendUnavailable(f"openvino-cpu cannot run {precision} here: {reason}")
        import openvino

        cores = default_threads()
        per_stream = max(1, min(threads or cores, cores))
        streams = max(1, cores // per_stream)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": COMPUTE[precision],
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": streams * per_stream,
        }
        try:
            self._compiled = openvino.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:
            raise EngineError(f"OpenVINO cannot compile {path}: {exc}") from exc
        graph_inputs = {name for port in self._compiled.inputs for name in port.get_names()}
        self.input_names = [n for n in self.input_names if n in graph_inputs] or sorted(graph_inputs)
        self._outputs = {name: port for port in self._compiled.outputs for name in port.get_names()}
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(streams):
            self._free.put(self._compiled.create_infer_request())
        self.precision = precision
        self.streams = streams

    def _infer(self, inputs: Arrays, outputs: list[str]) -> Outputs:
        request = self._free.get()
        try:
            # Shared (zero-copy) inputs and outputs; the outputs are copied out before the request is reused.
            request.infer(dict(inputs), share_inputs=True, share_outputs=True)
            return {name: np.array(request.get_tensor(self._outputs[name]).data, dtype=np.float32) for name in outputs}
        except Exception as exc:
            raise EngineError(f"{self.name} inference failed: {exc}") from exc
        finally:
            self._free.put(request)

    def close(self) -> None:
        super().close()
        self._compiled = None

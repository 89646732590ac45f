"""`tensorrt` backend: runs `.plan` files with NVIDIA TensorRT (`tensorrt`) or TensorRT-RTX (`tensorrt_rtx`).

Buffers come from cuda-python, never torch. Batches are pipelined over two buffer slots and three streams:
the upload of batch i+1 and the download of batch i-1 overlap the compute of batch i on one execution context.
TensorRT and cuda-python are imported only when an engine is opened.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.engines import cuda
from trt_embed.engines.base import Arrays, Batch, Engine, Outputs
from trt_embed.errors import BackendUnavailable, EngineError
from trt_embed.manifest import EngineEntry, ShapeProfile

MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
INSTALL = {"tensorrt": "pip install tensorrt cuda-python", "tensorrt-rtx": "pip install 'trt-embed[tensorrt-rtx]'"}
SLOTS = 2


def load_tensorrt(flavour: str | None = None) -> tuple[Any, str]:
    """Import TensorRT: `flavour` ("tensorrt" or "tensorrt-rtx"), or whichever is installed (NVIDIA first)."""
    if flavour is not None and flavour not in MODULES:
        raise BackendUnavailable(f"unknown TensorRT flavour {flavour!r}; expected one of {', '.join(MODULES)}")
    for name in [flavour] if flavour else list(MODULES):
        try:
            return importlib.import_module(MODULES[name]), name
        except ImportError:
            continue
    wanted = flavour or " or ".join(MODULES)
    install = INSTALL[flavour] if flavour else " / ".join(INSTALL.values())
    raise BackendUnavailable(f"{wanted} is not installed; install it with: {install}")


def plan_targets(entry: EngineEntry) -> list[str]:
    """The compute capabilities a plan was built for, e.g. ["sm_80", "sm_86"]."""
    return [t.strip() for t in entry.target.split(",") if t.strip()]


def why_not_here(entry: EngineEntry, gpu: cuda.Gpu | None = None) -> str | None:
    """None if the plan can run on this machine, else the reason (what it was built for, what this is)."""
    flavour = str(entry.extra.get("flavour", "tensorrt"))
    try:
        trt, _ = load_tensorrt(flavour)
    except BackendUnavailable as exc:
        return str(exc)
    built = str(entry.extra.get("tensorrt_version", ""))
    if built and built != trt.__version__:
        return f"{entry.file} was built with {flavour} {built}, this machine has {trt.__version__}; rebuild the plan"
    try:
        gpu = gpu or cuda.current_gpu()
    except (BackendUnavailable, EngineError, ImportError) as exc:
        return f"{entry.file} targets {', '.join(plan_targets(entry))}; no GPU to run it here ({exc})"
    if gpu.sm not in plan_targets(entry):
        return (
            f"{entry.file} was built for {', '.join(plan_targets(entry))}; this GPU is {gpu.name} ({gpu.sm}). "
            f"Build one for it: trt-embed build-engine ARTIFACT --target-sm {gpu.major}{gpu.minor} (TensorRT-RTX "
            "builds for sm 80/86/89/120/121 on any machine; other GPUs need NVIDIA TensorRT on that GPU)"
        )
    return None


def pick_profile(profiles: Sequence[ShapeProfile], batch: int, seq: int) -> int:
    """Index of the smallest profile that fits (batch, seq)."""
    fitting = [i for i, p in enumerate(profiles) if p.fits(batch, seq)]
    if not fitting:
        raise ValueError(f"batch {batch} x seq {seq} fits none of the engine's profiles")
    return min(fitting, key=lambda i: profiles[i].max[0] * profiles[i].max[1])


@dataclasses.dataclass
class _Slot:
    """Buffers and events for one batch in flight."""

    host_in: dict[str, cuda.PinnedBuffer]
    dev_in: dict[str, cuda.DeviceBuffer]
    dev_out: dict[str, cuda.DeviceBuffer]
    host_out: dict[str, cuda.PinnedBuffer]
    uploaded: cuda.Event
    computed: cuda.Event
    downloaded: cuda.Event
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


class TensorRTEngine(Engine):
    name = "tensorrt"
    device = "cuda"

    def __init__(self, path: Path, entry: EngineEntry, *, device: int = 0) -> None:
        super().__init__(entry)
        trt, self.flavour = load_tensorrt(str(entry.extra.get("flavour", "tensorrt")))
        reason = why_not_here(entry, cuda.current_gpu(device))
        if reason:
            raise BackendUnavailable(reason)
        self.device_index = device
        cuda.check(cuda.cudart().cudaSetDevice(device))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EngineError(f"{self.flavour} could not deserialize {path}; see the TensorRT log above")
        self._context = self._engine.create_execution_context()
        if not self.profiles:
            raise EngineError(f"{entry.file} has no shape profiles in the manifest; rebuild it with build-engine")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self._all_outputs = [n for n in names if not is_input[n]]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._active_profile = 0
        self._lock = threading.Lock()
        self._upload, self._compute, self._download = cuda.Stream(), cuda.Stream(), cuda.Stream()
        self._slots = [self._make_slot() for _ in range(SLOTS)]

    def _max_elements(self, name: str) -> int:
        """Elements of a tensor at the largest batch and sequence over all profiles."""
        batch = max(p.max[0] for p in self.profiles)
        seq = max(p.max[1] for p in self.profiles)
        dims = [batch if i == 0 else seq if d < 0 else d for i, d in enumerate(self._engine.get_tensor_shape(name))]
        return int(np.prod(dims))

    def _make_slot(self) -> _Slot:
        size = {n: self._max_elements(n) for n in [*self.input_names, *self._all_outputs]}
        nbytes = {n: size[n] * self._dtypes[n].itemsize for n in size}
        return _Slot(
            host_in={n: cuda.PinnedBuffer(size[n], self._dtypes[n]) for n in self.input_names},
            dev_in={n: cuda.DeviceBuffer(nbytes[n]) for n in self.input_names},
            dev_out={n: cuda.DeviceBuffer(nbytes[n]) for n in self._all_outputs},
            host_out={n: cuda.PinnedBuffer(size[n], self._dtypes[n]) for n in self._all_outputs},
            uploaded=cuda.Event(),
            computed=cuda.Event(),
            downloaded=cuda.Event(),
        )

    def _submit(self, slot: _Slot, inputs: Arrays, outputs: list[str]) -> None:
        """Queue upload -> execute -> download of one batch; returns without waiting. Token inputs are
        [batch, sequence]; an image graph's pixel_values [batch, 3, H, W] pick their profile by batch alone."""
        first = inputs[self.input_names[0]]
        batch = int(first.shape[0])
        seq = int(first.shape[1]) if first.ndim == 2 else min(p.max[1] for p in self.profiles)
        for name in self.input_names:
            host = slot.host_in[name].view(inputs[name].shape)
            host[...] = inputs[name]
            cuda.copy_to_device(slot.dev_in[name], slot.host_in[name], host.nbytes, self._upload)
        slot.uploaded.record(self._upload)
        self._compute.wait(slot.uploaded)
        profile = pick_profile(self.profiles, batch, seq)
        if profile != self._active_profile:
            self._context.set_optimization_profile_async(profile, self._compute.ptr)
            self._active_profile = profile
        for name in self.input_names:
            self._context.set_input_shape(name, tuple(inputs[name].shape))
            self._context.set_tensor_address(name, slot.dev_in[name].ptr)
        for name in self._all_outputs:
            self._context.set_tensor_address(name, slot.dev_out[name].ptr)
        if not self._context.execute_async_v3(self._compute.ptr):
            raise EngineError(f"tensorrt: execute_async_v3 failed for batch {batch} x seq {seq}")
        slot.computed.record(self._compute)
        self._download.wait(slot.computed)
        slot.shapes = {}
        for name in outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            slot.shapes[name] = shape
            nbytes = int(np.prod(shape)) * self._dtypes[name].itemsize
            cuda.copy_to_host(slot.host_out[name], slot.dev_out[name], nbytes, self._download)
        slot.downloaded.record(self._download)

    def _collect(self, slot: _Slot) -> Outputs:
        slot.downloaded.synchronize()
        return {n: slot.host_out[n].view(s).astype(np.float32, copy=True) for n, s in slot.shapes.items()}

    def _run(self, batches: Iterable[Arrays], outputs: list[str]) -> list[Outputs]:
        results: list[Outputs] = []
        in_flight: deque[_Slot] = deque()
        with self._lock:
            cuda.check(cuda.cudart().cudaSetDevice(self.device_index))  # the current GPU is per thread
            try:
                for index, inputs in enumerate(batches):
                    if len(in_flight) == SLOTS:  # the slot about to be reused must be done
                        results.append(self._collect(in_flight.popleft()))
                    slot = self._slots[index % SLOTS]
                    self._submit(slot, inputs, outputs)
                    in_flight.append(slot)
                while in_flight:
                    results.append(self._collect(in_flight.popleft()))
            except BaseException:
                self._drain()  # leave no copy in flight into buffers the next call reuses
                raise
        return results

    def _drain(self) -> None:
        for stream in (self._upload, self._compute, self._download):
            stream.synchronize()

    def _infer(self, inputs: Arrays, outputs: list[str]) -> Outputs:
        return self._run([inputs], outputs)[0]

    def infer_batches(self, batches: Iterable[Batch], outputs: Sequence[str]) -> list[Outputs]:
        return self._run((self._checked(b, outputs) for b in batches), list(outputs))

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        cuda.check(cuda.cudart().cudaSetDevice(self.device_index))
        self._drain()
        for slot in self._slots:
            for buffer in [*slot.host_in.values(), *slot.host_out.values()]:
                buffer.free()
            for device in [*slot.dev_in.values(), *slot.dev_out.values()]:
                device.free()
            for event in (slot.uploaded, slot.computed, slot.downloaded):
                event.destroy()
        for stream in (self._upload, self._compute, self._download):
            stream.destroy()
        self._context = None
        self._engine = None


def engine_layers(path: Path, entry: EngineEntry) -> str:
    """The engine inspector's per-layer view of a plan; needs the GPU and TensorRT it was built for."""
    reason = why_not_here(entry)
    if reason:
        raise BackendUnavailable(reason)
    trt, _ = load_tensorrt(str(entry.extra.get("flavour", "tensorrt")))
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise EngineError(f"could not deserialize {path}")
    inspector = engine.create_engine_inspector()
    return str(inspector.get_engine_information(trt.LayerInformationFormat.ONELINE))

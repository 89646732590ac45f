"""A lean CUDA layer over cuda-python (`cuda.bindings.runtime`): device facts, buffers, streams, events.

Only what the TensorRT backend needs. Every call is checked; failures raise `EngineError` with CUDA's message.
Nothing here is imported until a TensorRT engine is opened, so the runtime works without cuda-python.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.errors import BackendUnavailable, EngineError, MissingDependency


@functools.cache
def cudart() -> Any:
    """The CUDA runtime module of cuda-python (13.x `cuda.bindings.runtime`, 12.x `cuda.cudart`)."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart as runtime

        return runtime
    except ImportError:
        raise MissingDependency("cuda-python", "gpu") from None


def check(result: Any) -> Any:
    """Unpack a cuda-python result tuple `(err, *values)`, raising on any error."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        _, name = rt.cudaGetErrorName(err)
        _, text = rt.cudaGetErrorString(err)
        raise EngineError(f"CUDA error {name.decode()}: {text.decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    major: int
    minor: int

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"


def gpu_count() -> int:
    """CUDA GPUs this process sees (0 without a driver or cuda-python)."""
    try:
        rt = cudart()
    except MissingDependency:
        return 0
    err, count = rt.cudaGetDeviceCount()
    return int(count) if err == rt.cudaError_t.cudaSuccess else 0


def current_gpu(index: int = 0) -> Gpu:
    """The GPU the runtime would run on; `BackendUnavailable` when there is none or no driver."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:
        _, text = rt.cudaGetErrorString(err)
        raise BackendUnavailable(f"no usable CUDA GPU: {text.decode()}")
    if not count or index >= count:
        raise BackendUnavailable(f"no CUDA GPU {index} (found {count or 0})")
    attr = rt.cudaDeviceAttr
    major = check(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, index))
    minor = check(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, index))
    props = check(rt.cudaGetDeviceProperties(index))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return Gpu(index=index, name=name, major=int(major), minor=int(minor))


class DeviceBuffer:
    """`nbytes` of device memory."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart().cudaMalloc(max(nbytes, 1))))

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr))
            self.ptr = 0


class PinnedBuffer:
    """Page-locked host memory viewed as a flat NumPy array, so async copies really are asynchronous."""

    def __init__(self, size: int, dtype: npt.DTypeLike) -> None:
        self.dtype = np.dtype(dtype)
        self.nbytes = max(size, 1) * self.dtype.itemsize
        self.ptr = int(check(cudart().cudaMallocHost(self.nbytes)))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array: npt.NDArray[Any] = np.frombuffer(memoryview(raw).cast("B"), dtype=self.dtype)

    def view(self, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        return self.array[: int(np.prod(shape))].reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = np.empty(0, dtype=self.dtype)
            check(cudart().cudaFreeHost(self.ptr))
            self.ptr = 0


class Stream:
    def __init__(self) -> None:
        self.handle = check(cudart().cudaStreamCreateWithFlags(cudart().cudaStreamNonBlocking))

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def wait(self, event: Event) -> None:
        check(cudart().cudaStreamWaitEvent(self.handle, event.handle, 0))

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        check(cudart().cudaStreamDestroy(self.handle))


class Event:
    def __init__(self) -> None:
        self.handle = check(cudart().cudaEventCreateWithFlags(cudart().cudaEventDisableTiming))

    def record(self, stream: Stream) -> None:
        check(cudart().cudaEventRecord(self.handle, stream.handle))

    def synchronize(self) -> None:
        check(cudart().cudaEventSynchronize(self.handle))

    def destroy(self) -> None:
        check(cudart().cudaEventDestroy(self.handle))


def copy_to_device(dst: DeviceBuffer, src: PinnedBuffer, nbytes: int, stream: Stream) -> None:
    kind = cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
    check(cudart().cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.handle))


def copy_to_host(dst: PinnedBuffer, src: DeviceBuffer, nbytes: int, stream: Stream) -> None:
    kind = cudart().cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(cudart().cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.handle))

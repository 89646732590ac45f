"""The `tensorrt` backend: backend choice and errors on this machine, the batch pipeline against a fake
TensorRT/CUDA, and real execution where a GPU that a plan targets exists (skipped elsewhere, saying why)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from trt_embed.engines import cuda
from trt_embed.engines import tensorrt as backend
from trt_embed.engines.base import Batch
from trt_embed.errors import BackendUnavailable
from trt_embed.manifest import EngineEntry, Manifest, ShapeProfile, TensorSpec
from trt_embed.runtime import Runtime

TEXTS = ["hello", "the cat read a paper in the city at night", " ".join(["what time is it"] * 12), "blue water"]
PROFILES = [ShapeProfile(min=(1, 1), opt=(4, 16), max=(8, 16)), ShapeProfile(min=(1, 1), opt=(2, 64), max=(4, 64))]


@pytest.fixture(scope="module")
def multi_sm_artifact(tiny_artifact: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny artifact with fp32 and fp16 plans for sm_80, sm_86 and sm_89 (TensorRT-RTX, built here)."""
    pytest.importorskip("tensorrt_rtx", reason="needs TensorRT-RTX to build plans: pip install tensorrt-rtx-cu13")
    from trt_embed.exporter.plans import PlanOptions, build_engine

    artifact = tmp_path_factory.mktemp("multi-sm") / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    build_engine(artifact, PlanOptions(targets=["80", "86", "89"], profiles=PROFILES, optimization_level=0))
    return artifact


def _gpu_reason() -> str | None:
    try:
        gpu = cuda.current_gpu()
    except Exception as exc:  # no cuda-python, no driver, no device
        return str(exc)
    return None if gpu else "no GPU"


def test_auto_falls_back_to_onnxruntime_cpu_and_says_why(multi_sm_artifact: Path) -> None:
    if _gpu_reason() is None:
        pytest.skip("this machine has a GPU; the CPU fallback is what is tested here")
    with Runtime.load(multi_sm_artifact, backend="auto") as runtime:
        assert runtime.backend == "onnxruntime-cpu"
        reason = runtime.backend_reason
        assert "no usable TensorRT plan" in reason
        assert "engines/model.fp32.sm80-sm86-sm89.plan targets sm_80, sm_86, sm_89" in reason
        assert "no GPU to run it here" in reason and "running model.onnx" in reason
        assert runtime.embed(TEXTS).shape == (len(TEXTS), 64)
    with Runtime.load(multi_sm_artifact, backend="auto", precision="fp16") as runtime:
        assert runtime.engine.entry.file == "model.fp16.onnx", "the checked fp16 graph runs on onnxruntime too"


def test_tensorrt_backend_here_is_a_clear_error(multi_sm_artifact: Path) -> None:
    if _gpu_reason() is None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailable, match=r"tensorrt backend cannot run here: .*targets sm_80, sm_86, sm_89"):
        Runtime.load(multi_sm_artifact, backend="tensorrt")


def test_a_plan_for_other_gpus_names_them_and_this_one(multi_sm_artifact: Path) -> None:
    from trt_embed.manifest import Manifest

    plan = next(e for e in Manifest.read(multi_sm_artifact).engines if e.kind == "tensorrt")
    h100 = cuda.Gpu(index=0, name="NVIDIA H100 80GB HBM3", major=9, minor=0)
    reason = backend.why_not_here(plan, h100)
    assert reason is not None
    assert "built for sm_80, sm_86, sm_89; this GPU is NVIDIA H100 80GB HBM3 (sm_90)" in reason
    assert "NVIDIA TensorRT" in reason
    assert backend.why_not_here(plan, cuda.Gpu(index=0, name="NVIDIA A10", major=8, minor=6)) is None


def test_auto_falls_back_when_a_matching_plan_fails_to_load(
    multi_sm_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trt_embed.engines.select as backends
    from trt_embed.artifact import Artifact
    from trt_embed.errors import EngineError

    artifact = Artifact.open(multi_sm_artifact)
    plan = next(e for e in artifact.manifest.engines if e.kind == "tensorrt")

    def broken(path: Path, entry: EngineEntry, **_: object) -> None:
        raise EngineError("could not deserialize")

    monkeypatch.setattr(backends, "usable_plan", lambda artifact, precision, variant, modality: (plan, "matches"))
    monkeypatch.setattr(backend, "TensorRTEngine", broken)
    choice = backends.open_engine(artifact, backend="auto")
    assert choice.backend == "onnxruntime-cpu"
    assert f"{plan.file} failed to load: could not deserialize" in choice.reason
    with pytest.raises(EngineError):
        backends.open_engine(artifact, backend="tensorrt")


def test_missing_tensorrt_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def no_module(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_module)
    with pytest.raises(BackendUnavailable, match=r"tensorrt-rtx is not installed; install it with: pip install"):
        backend.load_tensorrt("tensorrt-rtx")


def test_profile_choice() -> None:
    assert backend.pick_profile(PROFILES, 8, 16) == 0
    assert backend.pick_profile(PROFILES, 2, 10) == 0, "the smaller profile wins when both fit"
    assert backend.pick_profile(PROFILES, 3, 40) == 1
    with pytest.raises(ValueError, match="fits none"):
        backend.pick_profile(PROFILES, 8, 40)


def test_batches_respect_the_engine_profiles(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    with Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu") as runtime:
        expected = runtime.embed(TEXTS * 4)
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), copy)
    manifest = Manifest.read(copy)
    for entry in manifest.engines:  # as a plan would have them; the spec takes them and infer() rejects misfits
        entry.profiles = PROFILES
    manifest.write(copy)
    with Runtime.load(copy, backend="onnxruntime-cpu") as runtime:
        assert runtime.spec.profiles == tuple(PROFILES)
        shapes: list[tuple[int, int]] = []
        run = runtime.engine._infer

        def recording(inputs: Any, outputs: list[str]) -> Any:
            shapes.append(inputs["input_ids"].shape)
            return run(inputs, outputs)

        runtime.engine._infer = recording  # type: ignore[method-assign]
        np.testing.assert_allclose(runtime.embed(TEXTS * 4), expected, atol=2e-5)
        assert shapes
        for batch, width in shapes:
            assert any(p.fits(batch, width) for p in PROFILES)


# -- the pipeline against a fake TensorRT and CUDA: the orchestration runs, no kernels ------------------------

HIDDEN = 4


class _Memory:
    """Device memory of the fake: pointer -> bytes."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.next = 4096

    def alloc(self, nbytes: int) -> int:
        ptr, self.next = self.next, self.next + nbytes + 256
        self.blocks[ptr] = np.zeros(nbytes, dtype=np.uint8)
        return ptr


class _FakeContext:
    def __init__(self, memory: _Memory, log: list[str]) -> None:
        self.memory, self.log = memory, log
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self.log.append(f"profile {index}")
        return True

    def set_input_shape(self, name: str, shape: tuple[int, int]) -> bool:
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def _tensor(self, name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return self.memory.blocks[self.addresses[name]].view(dtype)[:count].reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        batch, seq = self.shapes["input_ids"]
        ids = self._tensor("input_ids", np.int64, (batch, seq))
        mask = self._tensor("attention_mask", np.int64, (batch, seq))
        pooled = (ids * mask).sum(1, keepdims=True) + np.arange(HIDDEN)
        self._tensor("sentence_embedding", np.float32, (batch, HIDDEN))[...] = pooled
        self._tensor("token_embeddings", np.float32, (batch, seq, HIDDEN))[...] = ids[..., None]
        self.log.append(f"execute {batch}x{seq}")
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        batch, seq = self.shapes["input_ids"]
        return (batch, HIDDEN) if name == "sentence_embedding" else (batch, seq, HIDDEN)


class _FakeLogger:
    WARNING = 2

    def __init__(self, severity: int) -> None:
        self.severity = severity


def _fake_trt(memory: _Memory, log: list[str]) -> Any:
    names = ["input_ids", "attention_mask", "sentence_embedding", "token_embeddings"]
    shapes = {"input_ids": (-1, -1), "attention_mask": (-1, -1), "sentence_embedding": (-1, HIDDEN)}
    engine = SimpleNamespace(
        num_io_tensors=len(names),
        get_tensor_name=lambda i: names[i],
        get_tensor_mode=lambda n: "in" if n in ("input_ids", "attention_mask") else "out",
        get_tensor_dtype=lambda n: np.int64 if n in ("input_ids", "attention_mask") else np.float32,
        get_tensor_shape=lambda n: shapes.get(n, (-1, -1, HIDDEN)),
        create_execution_context=lambda: _FakeContext(memory, log),
    )
    return SimpleNamespace(
        __version__="fake-1.0",
        Logger=_FakeLogger,
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: engine),
        TensorIOMode=SimpleNamespace(INPUT="in"),
        nptype=lambda dtype: dtype,
    )


def _fake_cuda(memory: _Memory) -> Any:
    class Pinned:
        def __init__(self, size: int, dtype: Any) -> None:
            self.array = np.zeros(max(size, 1), dtype=dtype)
            self.ptr = 1

        def view(self, shape: tuple[int, ...]) -> np.ndarray:
            return self.array[: int(np.prod(shape))].reshape(shape)

        def free(self) -> None:
            self.ptr = 0

    class Device:
        def __init__(self, nbytes: int) -> None:
            self.ptr = memory.alloc(nbytes)

        def free(self) -> None:
            self.ptr = 0

    def to_device(dst: Device, src: Pinned, nbytes: int, stream: Any) -> None:
        memory.blocks[dst.ptr][:nbytes] = src.array.view(np.uint8)[:nbytes]

    def to_host(dst: Pinned, src: Device, nbytes: int, stream: Any) -> None:
        dst.array.view(np.uint8)[:nbytes] = memory.blocks[src.ptr][:nbytes]

    nothing = SimpleNamespace(record=lambda s: None, synchronize=lambda: None, destroy=lambda: None)
    stream = SimpleNamespace(ptr=7, wait=lambda e: None, synchronize=lambda: None, destroy=lambda: None)
    return SimpleNamespace(
        Gpu=cuda.Gpu,
        current_gpu=lambda index=0: cuda.Gpu(index, "NVIDIA RTX A6000", 8, 6),
        check=lambda result: None,
        cudart=lambda: SimpleNamespace(cudaSetDevice=lambda i: None),
        PinnedBuffer=Pinned,
        DeviceBuffer=Device,
        Stream=lambda: stream,
        Event=lambda: nothing,
        copy_to_device=to_device,
        copy_to_host=to_host,
    )


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[backend.TensorRTEngine, list[str]]]:
    memory, log = _Memory(), []
    trt = _fake_trt(memory, log)
    monkeypatch.setattr(backend, "cuda", _fake_cuda(memory))
    monkeypatch.setattr(backend, "load_tensorrt", lambda flavour=None: (trt, "tensorrt-rtx"))
    entry = EngineEntry(
        file="engines/model.fp32.sm86.plan",
        kind="tensorrt",
        precision="fp32",
        target="sm_86",
        inputs=[TensorSpec("input_ids", "int64", ["batch", "sequence"]), TensorSpec("attention_mask", "int64", [])],
        outputs=[TensorSpec("sentence_embedding", "float32", []), TensorSpec("token_embeddings", "float32", [])],
        profiles=PROFILES,
        extra={"flavour": "tensorrt-rtx", "tensorrt_version": "fake-1.0"},
    )
    (tmp_path / "plan").write_bytes(b"plan")
    engine = backend.TensorRTEngine(tmp_path / "plan", entry)
    yield engine, log
    engine.close()


def test_pipeline_runs_batches_in_order_and_switches_profiles(
    fake_engine: tuple[backend.TensorRTEngine, list[str]],
) -> None:
    engine, log = fake_engine
    rng = np.random.default_rng(0)
    shapes = [(8, 16), (3, 40), (2, 10), (4, 64), (1, 1)]
    batches = []
    for batch, seq in shapes:
        ids = rng.integers(1, 100, (batch, seq))
        mask = np.ones_like(ids)
        mask[0, seq // 2 :] = 0 if seq > 1 else 1
        batches.append(Batch.padded({"input_ids": ids, "attention_mask": mask}))
    results = engine.infer_batches(batches, ["sentence_embedding", "token_embeddings"])
    assert len(results) == len(shapes)
    for inputs, out in zip(batches, results, strict=True):
        arrays = inputs.arrays
        expected = (arrays["input_ids"] * arrays["attention_mask"]).sum(1, keepdims=True) + np.arange(HIDDEN)
        np.testing.assert_array_equal(out["sentence_embedding"], expected.astype(np.float32))
        np.testing.assert_array_equal(out["token_embeddings"][..., 0], arrays["input_ids"].astype(np.float32))
    assert [e for e in log if e.startswith("profile")] == ["profile 1", "profile 0", "profile 1", "profile 0"]
    single = engine.infer(batches[1], ["sentence_embedding"])
    np.testing.assert_array_equal(single["sentence_embedding"], results[1]["sentence_embedding"])
    with pytest.raises(ValueError, match="fits none"):
        ones = np.ones((8, 40), np.int64)
        engine.infer(Batch.padded({"input_ids": ones, "attention_mask": ones}), [])


class _FakeImageContext(_FakeContext):
    """An image tower: pixel_values [B, 3, 2, 2] -> sentence_embedding [B, 4], each image's pixel sum + 0..3."""

    def execute_async_v3(self, stream: int) -> bool:
        shape = self.shapes["pixel_values"]
        pixels = self._tensor("pixel_values", np.float32, shape)
        pooled = pixels.reshape(shape[0], -1).sum(1, keepdims=True) + np.arange(HIDDEN)
        self._tensor("sentence_embedding", np.float32, (shape[0], HIDDEN))[...] = pooled
        self.log.append(f"execute {shape}")
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shapes["pixel_values"][0], HIDDEN)


def test_image_plans_take_pixel_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A two-tower image plan: [batch, 3, H, W] float inputs, the profile chosen by batch alone."""
    memory, log = _Memory(), []
    shapes = {"pixel_values": (-1, 3, 2, 2), "sentence_embedding": (-1, HIDDEN)}
    engine = SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: list(shapes)[i],
        get_tensor_mode=lambda n: "in" if n == "pixel_values" else "out",
        get_tensor_dtype=lambda n: np.float32,
        get_tensor_shape=lambda n: shapes[n],
        create_execution_context=lambda: _FakeImageContext(memory, log),
    )
    trt = _fake_trt(memory, log)
    trt.Runtime = lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: engine)
    monkeypatch.setattr(backend, "cuda", _fake_cuda(memory))
    monkeypatch.setattr(backend, "load_tensorrt", lambda flavour=None: (trt, "tensorrt-rtx"))
    profiles = [ShapeProfile(min=(1, 5), opt=(4, 5), max=(8, 5))]  # an image costs 5 tokens
    entry = EngineEntry(
        file="engines/vision.fp32.sm86.plan",
        kind="tensorrt",
        precision="fp32",
        target="sm_86",
        modality="image",
        inputs=[TensorSpec("pixel_values", "float32", ["batch", 3, 2, 2])],
        outputs=[TensorSpec("sentence_embedding", "float32", ["batch", HIDDEN])],
        profiles=profiles,
        extra={"flavour": "tensorrt-rtx", "tensorrt_version": "fake-1.0"},
    )
    (tmp_path / "plan").write_bytes(b"plan")
    runner = backend.TensorRTEngine(tmp_path / "plan", entry)
    rng = np.random.default_rng(1)
    batches = [Batch.images({"pixel_values": rng.random((n, 3, 2, 2), dtype=np.float32)}, [5] * n) for n in (3, 8, 1)]
    results = runner.infer_batches(batches, ["sentence_embedding"])
    runner.close()
    for batch, out in zip(batches, results, strict=True):
        pixels = batch.arrays["pixel_values"]
        want = pixels.reshape(len(pixels), -1).sum(1, keepdims=True) + np.arange(HIDDEN)
        np.testing.assert_allclose(out["sentence_embedding"], want, rtol=1e-6)
    assert [e for e in log if e.startswith("execute")] == [
        "execute (3, 3, 2, 2)",
        "execute (8, 3, 2, 2)",
        "execute (1, 3, 2, 2)",
    ]


# -- real execution -----------------------------------------------------------------------------------------


def test_plans_match_onnxruntime_on_a_supported_gpu(multi_sm_artifact: Path, tmp_path: Path) -> None:
    """Runs only where TensorRT + cuda-python + a GPU the plan targets exist."""
    from trt_embed.exporter.plans import PlanOptions, build_engine
    from trt_embed.manifest import Manifest

    gpu_missing = _gpu_reason()
    if gpu_missing:
        pytest.skip(
            f"needs a CUDA GPU (sm 80/86/89/120/121 for TensorRT-RTX plans), cuda-python and TensorRT: {gpu_missing}"
        )
    gpu = cuda.current_gpu()
    artifact = tmp_path / "artifact"
    shutil.copytree(multi_sm_artifact, artifact)
    try:
        build_engine(artifact, PlanOptions(targets=[f"{gpu.major}{gpu.minor}"], profiles=PROFILES))
    except Exception as exc:
        pytest.skip(f"cannot build a plan for this GPU ({gpu.name}, {gpu.sm}): {exc}")
    plan = next(e for e in Manifest.read(artifact).engines if e.kind == "tensorrt" and gpu.sm in e.target)
    reason = backend.why_not_here(plan)
    if reason:
        pytest.skip(reason)
    with Runtime.load(artifact, backend="onnxruntime-cpu") as cpu:
        expected = cpu.embed(TEXTS * 5, normalize=False)
    for precision, atol in (("fp32", 1e-3), ("fp16", 2e-2)):
        with Runtime.load(artifact, backend="auto", precision=precision) as runtime:
            assert runtime.backend == "tensorrt", runtime.backend_reason
            got = runtime.embed(TEXTS * 5, normalize=False)
            np.testing.assert_allclose(got, expected, atol=atol, rtol=atol)
            batched = runtime.embed(TEXTS, normalize=False)
            single = np.concatenate([runtime.embed([t], normalize=False) for t in TEXTS])
            np.testing.assert_allclose(batched, single, atol=atol)

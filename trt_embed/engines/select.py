"""Backend choice as one table: which backends exist, what each runs, what it needs here, and `auto`'s order.

`auto` walks `TABLE` top to bottom and takes the first backend that is meant for the requested precision and
can run on this machine; the reasons the ones above it could not are kept in `Choice.reason`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from trt_embed.artifact import Artifact, is_static
from trt_embed.engines.base import Engine
from trt_embed.errors import ArtifactError, BackendUnavailable, EngineError, InvalidRequest, TrtEmbedError
from trt_embed.manifest import EngineEntry


@dataclasses.dataclass(frozen=True)
class Want:
    """What the caller asked for."""

    precision: str = "fp32"
    variant: str = "base"
    threads: int | None = None
    verify: bool = True
    modality: str = "text"  # two-tower models: "image" opens the image graph
    device: int = 0  # GPU index (GPU backends only)


@dataclasses.dataclass
class Choice:
    engine: Engine
    backend: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Backend:
    """One row of the table.

    `runs`: precisions it can run when asked by name; `auto_for`: precisions `auto` considers it for;
    `why_not(artifact, want)`: None if it can run here, else the reason; `open` makes the engine;
    `chosen_because`: what `auto` says when it picks it; `calls_in_flight`: engine calls the runtime keeps
    running at once on an accelerator (CPU backends derive theirs from the cores instead).
    """

    name: str
    runs: tuple[str, ...]
    auto_for: tuple[str, ...]
    why_not: Callable[[Artifact, Want], str | None]
    open: Callable[[Artifact, Want], Engine]
    chosen_because: str
    # Default budgets per engine call (see runtime.options for how they were measured) and threads per call.
    max_batch_tokens: int = 8192
    max_batch_size: int = 128
    calls_in_flight: int = 1


# -- tensorrt -------------------------------------------------------------------------------------------------


def _plans(artifact: Artifact, want: Want) -> list[EngineEntry]:
    return [
        e
        for e in artifact.manifest.engines
        if e.kind == "tensorrt"
        and e.precision == want.precision
        and e.variant == want.variant
        and e.modality == want.modality
    ]


def usable_plan(
    artifact: Artifact, *, precision: str, variant: str, modality: str = "text"
) -> tuple[EngineEntry | None, str]:
    """The artifact's TensorRT plan that can run on this machine, and why (or why none can)."""
    plans = _plans(artifact, Want(precision=precision, variant=variant, modality=modality))
    if not plans:
        return None, f"the artifact has no {precision} TensorRT plan; add one with `trt-embed build-engine`"
    from trt_embed.engines.tensorrt import why_not_here

    reasons = []
    for plan in plans:
        reason = why_not_here(plan)
        if reason is None:
            flavour = plan.extra.get("flavour")
            return plan, f"{plan.file} was built for this GPU ({plan.target}) and {flavour} is installed"
        reasons.append(reason)
    return None, "; ".join(reasons)


def _tensorrt_why_not(artifact: Artifact, want: Want) -> str | None:
    plan, reason = usable_plan(artifact, precision=want.precision, variant=want.variant, modality=want.modality)
    return f"no usable TensorRT plan ({reason})" if plan is None else None


def _open_tensorrt(artifact: Artifact, want: Want) -> Engine:
    from trt_embed.engines import tensorrt

    plan, reason = usable_plan(artifact, precision=want.precision, variant=want.variant, modality=want.modality)
    if plan is None:
        raise BackendUnavailable(f"the tensorrt backend cannot run here: {reason}")
    try:
        return tensorrt.TensorRTEngine(artifact.engine_path(plan, verify=want.verify), plan, device=want.device)
    except TrtEmbedError as exc:
        raise EngineError(f"{plan.file} failed to load: {exc}") from exc


# -- onnxruntime ----------------------------------------------------------------------------------------------


def _cuda_why_not(artifact: Artifact, want: Want) -> str | None:
    from trt_embed.engines.onnxruntime import available_providers

    if "CUDAExecutionProvider" not in available_providers():
        return "onnxruntime has no CUDA execution provider"
    return None


def _open_onnxruntime(device: str) -> Callable[[Artifact, Want], Engine]:
    def open_(artifact: Artifact, want: Want) -> Engine:
        from trt_embed.engines.onnxruntime import OnnxRuntimeEngine, PackedOrPadded

        entry = artifact.onnx_entry(
            variant=want.variant,
            precision=want.precision,
            fused=device == "cuda",
            device=device,
            modality=want.modality,
        )
        path = artifact.engine_path(entry, verify=want.verify)
        engine = OnnxRuntimeEngine(path, entry, device=device, threads=want.threads, device_id=want.device)
        source = entry.extra.get("converted_from") if entry.extra.get("packed") else None
        if source is None:
            return engine
        padded = next(e for e in artifact.manifest.engines if e.file == source)
        path = artifact.engine_path(padded, verify=want.verify)
        return PackedOrPadded(engine, OnnxRuntimeEngine(path, padded, device=device, device_id=want.device))

    return open_


def _always(artifact: Artifact, want: Want) -> str | None:
    return None


# -- openvino -------------------------------------------------------------------------------------------------


def _openvino_why_not(artifact: Artifact, want: Want) -> str | None:
    from trt_embed.engines.openvino import why_not_here

    reason = why_not_here(want.precision)
    if reason is None and want.precision == "int8" and not artifact.has_static_int8(want.variant):
        return "the artifact has no int8 graph with static activation scales"
    return reason


def _open_openvino(artifact: Artifact, want: Want) -> Engine:
    from trt_embed.engines.openvino import OpenVinoEngine

    entry = artifact.onnx_entry(
        variant=want.variant, precision=want.precision, fused=False, static=True, modality=want.modality
    )
    if want.precision == "int8" and not is_static(entry):
        raise ArtifactError(
            "openvino-cpu runs int8 graphs with static activation scales and this artifact has none; re-export "
            "with the export extra installed (it includes nncf), or use --backend onnxruntime-cpu"
        )
    path = artifact.engine_path(entry, verify=want.verify)
    return OpenVinoEngine(path, entry, precision=want.precision, threads=want.threads)


# Padded tokens per engine call: small for onnxruntime on CPU, where activations then stay in cache
# (all-MiniLM-L6-v2 on 2 cores: 512 gave 231 texts/s, 2048 gave 202, with half the peak memory); larger for
# OpenVINO's AMX kernels (bf16: 581 texts/s at 2048, 509 at 512); large on GPUs, which need big batches to fill.
TABLE: tuple[Backend, ...] = (
    Backend(
        "tensorrt",
        runs=("fp32", "fp16"),
        auto_for=("fp32", "fp16"),
        why_not=_tensorrt_why_not,
        open=_open_tensorrt,
        chosen_because="a TensorRT plan built for this GPU",
        max_batch_tokens=65536,
        max_batch_size=512,
    ),
    Backend(
        "onnxruntime-cuda",
        runs=("fp32", "fp16", "int8"),
        auto_for=("fp32", "fp16", "int8"),
        why_not=_cuda_why_not,
        open=_open_onnxruntime("cuda"),
        chosen_because="onnxruntime has the CUDA execution provider",
        max_batch_tokens=65536,
        max_batch_size=1024,
        # Two calls at once: one's host work (batch assembly, copies, rows back) runs while the other's kernels
        # do; onnxruntime's Run is thread-safe and releases the GIL.
        calls_in_flight=2,
    ),
    Backend(
        "openvino-cpu",
        runs=("fp32", "bf16", "int8"),
        auto_for=("bf16", "int8"),
        why_not=_openvino_why_not,
        open=_open_openvino,
        chosen_because="bf16 and int8 with static scales run fastest on openvino-cpu",
        max_batch_tokens=2048,
        max_batch_size=128,
    ),
    Backend(
        "onnxruntime-cpu",
        runs=("fp32", "fp16", "int8"),
        auto_for=("fp32", "fp16", "int8"),
        why_not=_always,
        open=_open_onnxruntime("cpu"),
        chosen_because="the portable CPU engine",
        max_batch_tokens=512,
        max_batch_size=128,
    ),
)
BACKENDS: dict[str, Backend] = {row.name: row for row in TABLE}
BACKEND_NAMES: tuple[str, ...] = ("auto", *BACKENDS)
CPU_BACKENDS = ("onnxruntime-cpu", "openvino-cpu")


def open_engine(artifact: Artifact, *, backend: str = "auto", want: Want | None = None) -> Choice:
    """Open the engine for `backend`; `auto` takes the first row of `TABLE` meant for the precision that can
    run here, and says why (including why the rows above it could not)."""
    want = want or Want()
    if backend not in BACKEND_NAMES:
        raise InvalidRequest(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {backend!r}", "backend")
    if backend != "auto":
        row = BACKENDS[backend]
        if want.precision not in row.runs:
            able = [r.name for r in TABLE if want.precision in r.runs]
            raise InvalidRequest(
                f"{want.precision} runs on the {' or '.join(able)} backend only, not {backend} (its "
                f"{'plans' if backend == 'tensorrt' else 'engines'} are {' or '.join(row.runs)}); pick --backend "
                f"{able[-1] if able else 'auto'} or another --precision",
                "precision",
            )
        engine = row.open(artifact, want)
        return Choice(engine, backend, f"requested; running {engine.entry.file}{_compute(engine, want)}")
    skipped: list[str] = []
    for row in TABLE:
        if want.precision not in row.auto_for:
            continue
        why_not = row.why_not(artifact, want)
        if why_not is not None:
            skipped.append(f"not {row.name}: {why_not}")
            continue
        try:
            engine = row.open(artifact, want)
        except TrtEmbedError as exc:
            if row is TABLE[-1]:
                raise
            skipped.append(f"not {row.name}: {exc}")
            continue
        reason = "; ".join([*skipped, f"{row.chosen_because}; running {engine.entry.file}{_compute(engine, want)}"])
        return Choice(engine, row.name, reason)
    able = [r.name for r in TABLE if want.precision in r.runs]
    if not able:
        raise InvalidRequest(f"precision must be one of fp32, fp16, bf16, int8, got {want.precision!r}", "precision")
    raise BackendUnavailable(f"no backend can run {want.precision} here: {'; '.join(skipped)}")


def _compute(engine: Engine, want: Want) -> str:
    return f" with {want.precision} compute" if engine.name == "openvino-cpu" else ""

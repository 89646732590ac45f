"""Engine backends and the `auto` choice between them."""

from __future__ import annotations

import dataclasses

from trt_embed.errors import ArtifactError, BackendUnavailable, InvalidRequest, TrtEmbedError
from trt_embed.manifest import EngineEntry
from trt_embed.runtime.artifact import BACKENDS, Artifact, is_static
from trt_embed.runtime.backends.base import Engine
from trt_embed.runtime.backends.openvino import why_not_here as why_openvino_cannot


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
    """Open the engine for `backend`; `auto` takes the fastest one that can run here and says why:
    a TensorRT plan built for this GPU > onnxruntime-cuda > onnxruntime-cpu, except that bf16 (and int8 with
    static scales, when OpenVINO is installed) run on openvino-cpu."""
    if backend not in BACKENDS:
        raise InvalidRequest(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}", "backend")
    why_no_plan = ""
    if backend in ("auto", "tensorrt"):
        plan, why_no_plan = usable_plan(artifact, precision=precision, variant=variant)
        if plan is not None:
            from trt_embed.runtime.backends.tensorrt import TensorRTEngine

            try:
                plan_engine = TensorRTEngine(artifact.engine_path(plan, verify=verify), plan)
                return Choice(plan_engine, "tensorrt", "requested" if backend == "tensorrt" else why_no_plan)
            except TrtEmbedError as exc:
                if backend == "tensorrt":
                    raise
                why_no_plan = f"{plan.file} failed to load: {exc}"
        if backend == "tensorrt":
            raise BackendUnavailable(f"the tensorrt backend cannot run here: {why_no_plan}")
    from trt_embed.runtime.backends.onnxruntime import OnnxRuntimeEngine, available_providers

    prefix = f"no usable TensorRT plan ({why_no_plan}); " if backend == "auto" else ""
    if backend == "openvino-cpu" or (backend == "auto" and precision == "bf16"):
        reason = "requested" if backend != "auto" else prefix + "bf16 runs on openvino-cpu"
        return _openvino(artifact, precision=precision, variant=variant, threads=threads, verify=verify, reason=reason)
    if precision == "bf16":
        raise InvalidRequest(f"bf16 runs on the openvino-cpu backend only, not {backend}", "precision")
    if backend == "onnxruntime-cuda" or (backend == "auto" and "CUDAExecutionProvider" in available_providers()):
        entry = artifact.onnx_entry(variant=variant, precision=precision, fused=True)
        path = artifact.engine_path(entry, verify=verify)
        engine = OnnxRuntimeEngine(path, entry, device="cuda", threads=threads)
        reason = "requested" if backend != "auto" else prefix + "onnxruntime has the CUDA execution provider"
        return Choice(engine, "onnxruntime-cuda", f"{reason}; running {entry.file}")
    if backend == "auto" and precision == "int8" and artifact.has_static_int8(variant):
        why_not = why_openvino_cannot(precision)
        if why_not is None:
            reason = prefix + "int8 with static scales runs fastest on openvino-cpu"
            return _openvino(
                artifact, precision=precision, variant=variant, threads=threads, verify=verify, reason=reason
            )
        prefix += f"openvino-cpu would run int8 faster but {why_not}; "
    entry = artifact.onnx_entry(variant=variant, precision=precision, fused=False)
    engine = OnnxRuntimeEngine(artifact.engine_path(entry, verify=verify), entry, device="cpu", threads=threads)
    reason = "requested" if backend != "auto" else prefix + "onnxruntime has no CUDA execution provider"
    return Choice(engine, "onnxruntime-cpu", f"{reason}; running {entry.file}")


def _openvino(
    artifact: Artifact, *, precision: str, variant: str, threads: int | None, verify: bool, reason: str
) -> Choice:
    from trt_embed.runtime.backends.openvino import OpenVinoEngine

    entry = artifact.onnx_entry(variant=variant, precision=precision, fused=False, static=True)
    if precision == "int8" and not is_static(entry):
        raise ArtifactError(
            "openvino-cpu runs int8 graphs with static activation scales and this artifact has none; re-export "
            "with the export extra installed (it includes nncf), or use --backend onnxruntime-cpu"
        )
    engine = OpenVinoEngine(artifact.engine_path(entry, verify=verify), entry, precision=precision, threads=threads)
    return Choice(engine, "openvino-cpu", f"{reason}; running {entry.file} with {precision} compute")


def usable_plan(artifact: Artifact, *, precision: str, variant: str) -> tuple[EngineEntry | None, str]:
    """The artifact's TensorRT plan that can run on this machine, and why (or why none can)."""
    plans = [
        e
        for e in artifact.manifest.engines
        if e.kind == "tensorrt" and e.precision == precision and e.variant == variant
    ]
    if not plans:
        return None, f"the artifact has no {precision} TensorRT plan; add one with `trt-embed build-engine`"
    from trt_embed.runtime.backends.tensorrt import why_not_here

    reasons = []
    for plan in plans:
        reason = why_not_here(plan)
        if reason is None:
            return (
                plan,
                f"{plan.file} was built for this GPU ({plan.target}) and {plan.extra.get('flavour')} is installed",
            )
        reasons.append(reason)
    return None, "; ".join(reasons)

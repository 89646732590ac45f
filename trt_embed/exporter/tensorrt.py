"""TensorRT steps: ONNX graph -> network -> builder config -> serialized plan, for `tensorrt` and `tensorrt_rtx`.

Composable like Polygraphy's loaders: `network_from_onnx`, `config_for`, `plan_from_network`, and
`engine_from_onnx` doing all three. Networks are strongly typed: the ONNX graph's dtypes are the engine's
precisions, so an fp16 engine is built from the mixed-precision `model.fp16.onnx`.

TensorRT-RTX builds ahead of time without a GPU for the compute capabilities it lists
(`ComputeCapability.SM80`, ...); NVIDIA TensorRT builds for the GPU it runs on.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from trt_embed.engines import cuda
from trt_embed.engines.tensorrt import load_tensorrt
from trt_embed.errors import ExportError
from trt_embed.manifest import ShapeProfile, TensorSpec

log = logging.getLogger("trt_embed.export")

# Layers whose output dtype tells the precision the engine computes in (the rest move data around).
COMPUTE_LAYERS = ("MATRIX_MULTIPLY", "NORMALIZATION", "SOFTMAX", "REDUCE", "ELEMENTWISE", "ACTIVATION", "UNARY")


@dataclasses.dataclass
class BuildOptions:
    profiles: list[ShapeProfile]
    targets: list[str] | None = None  # compute capabilities ("80", "8.6", "sm_89"); None: every one supported
    optimization_level: int | None = None  # builder optimization level 0..5; None: TensorRT's default (3)
    timing_cache: Path | None = None  # read if present, written after the build (NVIDIA TensorRT only)
    flavour: str | None = None  # "tensorrt" | "tensorrt-rtx"; None: whichever is installed
    progress: bool = True


@dataclasses.dataclass
class Build:
    """The TensorRT objects of one build; kept together because the network needs its parser alive."""

    trt: Any
    flavour: str
    builder: Any
    network: Any
    parser: Any
    logger: Any
    config: Any = None
    targets: list[str] = dataclasses.field(default_factory=list)
    profiles: list[Any] = dataclasses.field(default_factory=list)  # the IOptimizationProfiles added to config
    timing_cache: Any = None
    monitor: Any = None  # the config does not own it: keep the progress monitor alive for the build


@dataclasses.dataclass
class BuiltPlan:
    plan: bytes
    flavour: str
    version: str
    targets: list[str]  # "sm_80", ...
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    layers: dict[str, Any]
    seconds: float


def normalize_sm(target: str) -> str:
    """'86', '8.6', 'sm86', 'sm_86' -> 'sm_86'."""
    digits = target.strip().lower().removeprefix("sm").removeprefix("_").replace(".", "")
    if not digits.isdigit() or len(digits) < 2:
        raise ExportError(f"bad target compute capability {target!r}; write it like 86, 8.6 or sm_86")
    return f"sm_{digits}"


def _logger(trt: Any) -> Any:
    class Logger(trt.ILogger):  # type: ignore[misc]
        """Forwards TensorRT messages to logging and keeps the errors for the exception message."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(msg)
                log.error("%s", msg)
            elif severity == trt.ILogger.WARNING and "Int64 binding" not in msg:
                log.warning("%s", msg)
            else:
                log.debug("%s", msg)

    return Logger()


def _progress(trt: Any) -> Any:
    class Progress(trt.IProgressMonitor):  # type: ignore[misc]
        """Logs the builder's top-level phases and their nested steps."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.depth[phase_name] = self.depth.get(parent_phase or "", -1) + 1
            if self.depth[phase_name] <= 1:
                log.info("%s%s (%d steps)", "  " * self.depth[phase_name], phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            self.depth.pop(phase_name, None)

    return Progress()


def network_from_onnx(onnx_path: Path, flavour: str | None = None) -> Build:
    """Parse an ONNX graph into a strongly typed TensorRT network."""
    try:
        trt, flavour = load_tensorrt(flavour)
    except Exception as exc:
        raise ExportError(f"cannot build TensorRT plans: {exc}") from exc
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{flavour} cannot parse {onnx_path.name}: {errors}")
    return Build(trt=trt, flavour=flavour, builder=builder, network=network, parser=parser, logger=logger)


def supported_targets(trt: Any) -> list[str]:
    """Compute capabilities a TensorRT-RTX builder can target ahead of time, e.g. ['sm_80', 'sm_86', ...]."""
    names = getattr(trt, "ComputeCapability", None)
    if names is None:
        return []
    return [f"sm_{name[2:]}" for name in names.__members__ if name.startswith("SM")]


def config_for(build: Build, options: BuildOptions) -> Build:
    """Builder config: optimization profiles, target compute capabilities, optimization level, cache, progress."""
    trt, network = build.trt, build.network
    config = build.builder.create_builder_config()
    for shape in options.profiles:
        profile = build.builder.create_optimization_profile()
        for i in range(network.num_inputs):
            # token inputs [batch, sequence] take the profile's shapes; image inputs (pixel_values [batch, 3, H,
            # W]; NaFlex's patches [batch, N, D], mask [batch, N], grid [batch, 2]) its batch sizes and the
            # graph's fixed sizes for the rest
            tensor = network.get_input(i)
            dims = tuple(tensor.shape)
            profile.set_shape(tensor.name, *(_dims(dims, size) for size in (shape.min, shape.opt, shape.max)))
        if config.add_optimization_profile(profile) < 0:
            raise ExportError(f"TensorRT rejected profile {shape}; see the log above")
        build.profiles.append(profile)
    build.targets = _set_targets(build, config, options.targets)
    if options.optimization_level is not None:
        if not 0 <= options.optimization_level <= 5:
            raise ExportError(f"builder optimization level must be 0..5, got {options.optimization_level}")
        config.builder_optimization_level = options.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names and tactics for the inspector
    if options.progress:
        build.monitor = _progress(trt)
        config.progress_monitor = build.monitor
    if options.timing_cache is not None and build.flavour == "tensorrt":  # TensorRT-RTX: timing caches are no-ops
        data = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        build.timing_cache = config.create_timing_cache(data)
        config.set_timing_cache(build.timing_cache, False)
    build.config = config
    return build


def _dims(graph: tuple[int, ...], size: tuple[int, int]) -> tuple[int, ...]:
    """An input's shape at a profile point (batch, sequence): the batch first, the sequence where the graph's
    second axis is dynamic, the graph's own sizes elsewhere."""
    return tuple(size[0] if i == 0 else size[1] if i == 1 and d < 0 else d for i, d in enumerate(graph))


def _set_targets(build: Build, config: Any, targets: list[str] | None) -> list[str]:
    trt = build.trt
    if not hasattr(config, "set_compute_capability"):  # NVIDIA TensorRT: the GPU it runs on
        here = cuda.current_gpu().sm
        wanted = [normalize_sm(t) for t in targets or [here]]
        if wanted != [here]:
            raise ExportError(
                f"NVIDIA TensorRT builds only for the GPU it runs on ({here}); asked for {', '.join(wanted)}. "
                "Build on each target GPU, or use TensorRT-RTX (pip install tensorrt-rtx-cu13) for sm 80/86/89/120"
            )
        return wanted
    available = supported_targets(trt)
    wanted = (
        list(dict.fromkeys(normalize_sm(t) for t in targets)) if targets else [t for t in available if int(t[3:]) >= 80]
    )
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise ExportError(
            f"TensorRT-RTX {trt.__version__} cannot build for {', '.join(unknown)}; it builds for "
            f"{', '.join(available)}. For Hopper (sm_90) or datacenter Blackwell (sm_100) build on that GPU with "
            "NVIDIA TensorRT: pip install tensorrt"
        )
    config.num_compute_capabilities = len(wanted)
    for index, target in enumerate(wanted):
        if not config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{target[3:]}"), index):
            raise ExportError(f"TensorRT-RTX refused target {target}")
    return wanted


def plan_from_network(build: Build, timing_cache: Path | None = None) -> bytes:
    """Build and serialize; errors carry TensorRT's own messages."""
    plan = build.builder.build_serialized_network(build.network, build.config)
    if plan is None or plan.nbytes == 0:
        errors = "; ".join(build.logger.errors[-3:]) or "no message"
        raise ExportError(f"{build.flavour} could not build a plan for {', '.join(build.targets)}: {errors}")
    if build.timing_cache is not None and timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(build.timing_cache.serialize()))
    return bytes(plan)


def layer_summary(network: Any) -> dict[str, Any]:
    """Layer counts by type, and the dtypes the compute layers produce (the strongly typed network's precisions)."""
    by_type: collections.Counter[str] = collections.Counter()
    compute: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = str(layer.type).rsplit(".", 1)[-1]
        by_type[kind] += 1
        if kind in COMPUTE_LAYERS and layer.num_outputs:
            compute[kind][_dtype(layer.get_output_type(0))] += 1
    return {
        "layers": network.num_layers,
        "by_type": dict(by_type.most_common()),
        "compute_dtypes": {k: dict(v) for k, v in sorted(compute.items())},
    }


def _dtype(dtype: Any) -> str:
    names = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT64": "int64", "INT32": "int32"}
    name = str(dtype).rsplit(".", 1)[-1]
    return names.get(name, name.lower())


def io_tensors(network: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def spec(tensor: Any) -> TensorSpec:
        axes = ("batch", "sequence")
        shape = [axes[i] if d < 0 and i < 2 else int(d) for i, d in enumerate(tensor.shape)]
        return TensorSpec(tensor.name, _dtype(tensor.dtype), shape)

    inputs = [spec(network.get_input(i)) for i in range(network.num_inputs)]
    return inputs, [spec(network.get_output(i)) for i in range(network.num_outputs)]


def engine_from_onnx(onnx_path: Path, options: BuildOptions) -> BuiltPlan:
    """ONNX graph -> serialized TensorRT plan, with the facts the manifest records about it."""
    started = time.perf_counter()
    build = config_for(network_from_onnx(onnx_path, options.flavour), options)
    log.info("building %s plan from %s for %s", build.flavour, onnx_path.name, ", ".join(build.targets))
    plan = plan_from_network(build, options.timing_cache)
    inputs, outputs = io_tensors(build.network)
    seconds = time.perf_counter() - started
    log.info("built %.1f MB plan in %.1fs", len(plan) / 1e6, seconds)
    return BuiltPlan(
        plan=plan,
        flavour=build.flavour,
        version=str(build.trt.__version__),
        targets=build.targets,
        inputs=inputs,
        outputs=outputs,
        layers=layer_summary(build.network),
        seconds=seconds,
    )

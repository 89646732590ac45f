"""Artifact-level steps after the ONNX export: the checked fp16 graph and TensorRT plans, recorded in the manifest.

Both work on an existing artifact directory (no PyTorch model needed), so `trt-embed build-engine` can add
plans to an artifact made earlier, e.g. in a CI job with TensorRT-RTX and no GPU.
"""

from __future__ import annotations

import dataclasses
import logging
from importlib import metadata
from pathlib import Path

import numpy as np

from trt_embed.errors import ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.profiles import DEFAULT_MAX_BATCH, default_profiles, format_profile
from trt_embed.exporter.tensorrt import BuildOptions, engine_from_onnx
from trt_embed.manifest import EngineEntry, Manifest, ShapeProfile, sha256_file
from trt_embed.runtime.backends.onnxruntime import OnnxRuntimeEngine
from trt_embed.runtime.tokenizer import TextTokenizer, pad_batch

log = logging.getLogger("trt_embed.export")

FP16_MIN_COSINE = 0.999
PLAN_PRECISIONS = ("fp32", "fp16")
ENGINES_DIR = "engines"
TIMING_CACHE = f"{ENGINES_DIR}/timing.cache"


@dataclasses.dataclass
class PlanOptions:
    precisions: tuple[str, ...] = PLAN_PRECISIONS
    targets: list[str] | None = None  # None: every compute capability the builder supports
    profiles: list[ShapeProfile] | None = None  # None: default_profiles(max sequence length, max_batch)
    max_batch: int = DEFAULT_MAX_BATCH
    optimization_level: int | None = None
    flavour: str | None = None
    variant: str = "base"


def _base_graph(manifest: Manifest, variant: str, fused: bool = False) -> EngineEntry:
    for entry in manifest.engines:
        if entry.kind == "onnx" and entry.precision == "fp32" and entry.optimized == fused and entry.variant == variant:
            return entry
    kind = "fused" if fused else "plain"
    raise ExportError(f"the artifact has no {kind} fp32 ONNX graph for variant {variant!r}; re-export the model")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def quality(got: np.ndarray, want: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """What the manifest records of a graph checked against its reference, and the per-input cosines."""
    cos = cosines(got, want)
    record = {
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "max_abs_diff": float(np.abs(got - want).max()),
        "checked_inputs": float(len(want)),
    }
    return record, cos


def ensure_fp16_graph(
    directory: Path,
    manifest: Manifest,
    texts: list[str],
    *,
    variant: str = "base",
    strict: bool = True,
    fused: bool = False,
) -> EngineEntry | None:
    """Add `model.fp16.onnx` (mixed precision, see `fp16_from_onnx`) checked against the fp32 graph on CPU;
    with `fused`, `model.optimized.fp16.onnx` from the onnxruntime-fused graph (what onnxruntime-cuda runs).

    Returns the existing entry if there is one. If the fp16 graph is not accurate enough it is not kept:
    `strict` raises, otherwise a warning is logged and None returned.
    """
    existing = [
        e
        for e in manifest.engines
        if e.kind == "onnx" and e.precision == "fp16" and e.variant == variant and e.optimized == fused
    ]
    if existing:
        return existing[0]
    base = _base_graph(manifest, variant, fused)
    file = base.file.replace(".onnx", ".fp16.onnx")
    kept_fp32 = onnx_graph.fp16_from_onnx(directory / base.file, directory / file)
    tokenizer = TextTokenizer(directory / manifest.tokenizer.directory, manifest.tokenizer, manifest.max_seq_length)
    tokenized = tokenizer.encode(texts)
    info = manifest.tokenizer
    feeds: dict[str, np.ndarray] = dict(
        pad_batch(tokenized.ids, tokenized.type_ids, pad_id=info.pad_token_id, side=info.padding_side)
    )
    feeds["pooling_mask"] = feeds["attention_mask"]
    entry = dataclasses.replace(base, file=file, precision="fp16", sha256=sha256_file(directory / file))
    got, want = (_run_cpu(directory / e.file, e, feeds) for e in (entry, base))
    entry.quality, cos = quality(got, want)
    entry.extra = {"fp32_ops": kept_fp32, "checked_against": base.file}
    if cos.min() < FP16_MIN_COSINE:
        (directory / file).unlink()
        message = f"the fp16 graph is not accurate enough (min cosine vs fp32 {cos.min():.5f} < {FP16_MIN_COSINE})"
        if strict:
            raise ExportError(message + "; use --precision fp32")
        log.warning("%s; not shipping it", message)
        return None
    log.info("fp16 graph %s: min cosine vs fp32 %.6f (kept in fp32: %s)", file, cos.min(), ", ".join(kept_fp32))
    manifest.engines.append(entry)
    return entry


def _run_cpu(path: Path, entry: EngineEntry, feeds: dict[str, np.ndarray]) -> np.ndarray:
    engine = OnnxRuntimeEngine(path, entry, threads=2)
    try:
        return engine.infer(feeds, ["sentence_embedding"])["sentence_embedding"]
    finally:
        engine.close()


def add_plans(directory: Path, manifest: Manifest, options: PlanOptions) -> list[EngineEntry]:
    """Build one plan per precision for all requested compute capabilities; record them in the manifest.

    TensorRT-RTX puts several compute capabilities into one plan, so `target` lists them ("sm_80,sm_86").
    A plan with the same file name replaces the old one. The caller writes the manifest.
    """
    unknown = [p for p in options.precisions if p not in PLAN_PRECISIONS]
    if unknown:
        raise ExportError(f"TensorRT plans are built at {', '.join(PLAN_PRECISIONS)}; not {', '.join(unknown)}")
    profiles = options.profiles or default_profiles(manifest.max_seq_length, options.max_batch)
    too_long = [format_profile(p) for p in profiles if p.max[1] > manifest.max_seq_length]
    if too_long:
        raise ExportError(
            f"profiles {', '.join(too_long)} allow more than the model's {manifest.max_seq_length} tokens; "
            "lower the sequence length of their max shape"
        )
    (directory / ENGINES_DIR).mkdir(exist_ok=True)
    built_entries = []
    for precision in options.precisions:
        sources = [
            e
            for e in manifest.engines
            if e.kind == "onnx" and e.precision == precision and e.variant == options.variant and not e.optimized
        ]
        if not sources:
            raise ExportError(f"the artifact has no {precision} ONNX graph to build a plan from; export with it")
        source = sources[0]
        build_options = BuildOptions(
            profiles=profiles,
            targets=options.targets,
            optimization_level=options.optimization_level,
            timing_cache=directory / TIMING_CACHE,
            flavour=options.flavour,
        )
        built = engine_from_onnx(directory / source.file, build_options)
        variant = "" if options.variant == "base" else f".{options.variant}"
        file = f"{ENGINES_DIR}/model{variant}.{precision}.{'-'.join(t.replace('_', '') for t in built.targets)}.plan"
        (directory / file).write_bytes(built.plan)
        entry = EngineEntry(
            file=file,
            kind="tensorrt",
            precision=precision,
            target=",".join(built.targets),
            variant=options.variant,
            inputs=built.inputs,
            outputs=built.outputs,
            profiles=profiles,
            tools={built.flavour: built.version, "trt-embed": _version("trt-embed")},
            sha256=sha256_file(directory / file),
            extra={
                "flavour": built.flavour,
                "tensorrt_version": built.version,
                "source": source.file,
                "source_sha256": source.sha256,
                "builder_optimization_level": options.optimization_level,
                "timing_cache": TIMING_CACHE if (directory / TIMING_CACHE).is_file() else None,
                "build_seconds": round(built.seconds, 2),
                "network": built.layers,
            },
        )
        manifest.engines = [e for e in manifest.engines if e.file != file] + [entry]
        built_entries.append(entry)
    return built_entries


def build_engine(directory: Path, options: PlanOptions, texts: list[str] | None = None) -> list[EngineEntry]:
    """`trt-embed build-engine`: add plans to an existing artifact (and its fp16 graph if fp16 is asked for)."""
    from trt_embed.exporter.export import default_calibration_texts

    manifest = Manifest.read(directory)
    if "fp16" in options.precisions:
        ensure_fp16_graph(directory, manifest, texts or default_calibration_texts(), variant=options.variant)
    entries = add_plans(directory, manifest, options)
    manifest.write(directory)
    return entries


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"

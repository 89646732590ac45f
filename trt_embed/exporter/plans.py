"""TensorRT plans for an artifact (and the checked fp16 graph they are built from), recorded in the manifest.

Both work on an existing artifact directory (no PyTorch model needed), so `trt-embed build-engine` can add
plans to an artifact made earlier, e.g. in a CI job with TensorRT-RTX and no GPU.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path

from trt_embed.errors import ExportError
from trt_embed.exporter.calibration import default_calibration_texts
from trt_embed.exporter.checks import ensure_fp16_graph
from trt_embed.exporter.options import PLAN_PRECISIONS, PlanOptions, tool_versions
from trt_embed.exporter.profiles import default_profiles, format_profile
from trt_embed.exporter.tensorrt import BuildOptions, BuiltPlan, engine_from_onnx
from trt_embed.manifest import EngineEntry, Manifest, ShapeProfile, sha256_file

log = logging.getLogger("trt_embed.export")

ENGINES_DIR = "engines"
TIMING_CACHE = f"{ENGINES_DIR}/timing.cache"


def add_plans(directory: Path, manifest: Manifest, options: PlanOptions) -> list[EngineEntry]:
    """Build one plan per precision for all requested compute capabilities; record them in the manifest.

    TensorRT-RTX puts several compute capabilities into one plan, so `target` lists them ("sm_80,sm_86").
    A plan with the same file name replaces the old one. The caller writes the manifest.
    """
    profiles = _checked_profiles(manifest, options)
    (directory / ENGINES_DIR).mkdir(exist_ok=True)
    built_entries = []
    for precision, modality in itertools.product(options.precisions, _modalities(manifest)):
        source = _plan_source(manifest, precision, modality, options.variant)
        shapes = profiles if modality == "text" else image_profiles(profiles, manifest)
        build_options = BuildOptions(
            profiles=shapes,
            targets=options.targets,
            optimization_level=options.optimization_level,
            timing_cache=directory / TIMING_CACHE,
            flavour=options.flavour,
        )
        built = engine_from_onnx(directory / source.file, build_options)
        variant = "" if options.variant == "base" else f".{options.variant}"
        stem = "model" if modality == "text" else "vision"
        file = f"{ENGINES_DIR}/{stem}{variant}.{precision}.{'-'.join(t.replace('_', '') for t in built.targets)}.plan"
        (directory / file).write_bytes(built.plan)
        entry = _plan_entry(directory, file, built, source, build_options, options.variant)
        manifest.engines = [e for e in manifest.engines if e.file != file] + [entry]
        built_entries.append(entry)
    return built_entries


def _checked_profiles(manifest: Manifest, options: PlanOptions) -> list[ShapeProfile]:
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
    return profiles


def _plan_source(manifest: Manifest, precision: str, modality: str, variant: str) -> EngineEntry:
    """The plain ONNX graph a plan of this precision, modality and variant is built from."""
    for e in manifest.engines:
        if (e.kind, e.precision, e.variant, e.optimized, e.modality) == ("onnx", precision, variant, False, modality):
            return e
    graph = "" if modality == "text" else f" {modality}"
    raise ExportError(f"the artifact has no {precision}{graph} ONNX graph to build a plan from; export with it")


def _plan_entry(
    directory: Path, file: str, built: BuiltPlan, source: EngineEntry, build: BuildOptions, variant: str
) -> EngineEntry:
    return EngineEntry(
        file=file,
        kind="tensorrt",
        precision=source.precision,
        target=",".join(built.targets),
        variant=variant,
        modality=source.modality,
        inputs=built.inputs,
        outputs=built.outputs,
        profiles=build.profiles,
        tools={built.flavour: built.version, "trt-embed": tool_versions(("trt-embed",)).get("trt-embed", "unknown")},
        sha256=sha256_file(directory / file),
        extra={
            "flavour": built.flavour,
            "tensorrt_version": built.version,
            "source": source.file,
            "source_sha256": source.sha256,
            "builder_optimization_level": build.optimization_level,
            "timing_cache": TIMING_CACHE if (directory / TIMING_CACHE).is_file() else None,
            "build_seconds": round(built.seconds, 2),
            "network": built.layers,
        },
    )


def _modalities(manifest: Manifest) -> list[str]:
    """The graphs a plan is built for: the text graph, and a two-tower model's image graph."""
    return ["text"] if manifest.vision is None else ["text", "image"]


def image_profiles(profiles: list[ShapeProfile], manifest: Manifest) -> list[ShapeProfile]:
    """One profile for the image graph: the text profiles' batch sizes, each image counted as its patch tokens
    (the scheduler's cost of an image); the image shape itself is fixed by the graph."""
    tokens = int((manifest.vision or {}).get("image_tokens", 1))
    opt, most = max(p.opt[0] for p in profiles), max(p.max[0] for p in profiles)
    return [ShapeProfile(min=(1, tokens), opt=(opt, tokens), max=(most, tokens))]


def build_engine(directory: Path, options: PlanOptions, texts: list[str] | None = None) -> list[EngineEntry]:
    """`trt-embed build-engine`: add plans to an existing artifact (and its fp16 graph if fp16 is asked for;
    a two-tower model's fp16 graphs come from its export)."""
    manifest = Manifest.read(directory)
    if manifest.vlm is not None:
        raise ExportError(
            f"{manifest.architecture}: TensorRT plans are not built for vision-language models yet (their decoder "
            "takes inputs_embeds and their vision graph dynamic image sizes); serve it with onnxruntime"
        )
    if "fp16" in options.precisions and manifest.vision is None:
        ensure_fp16_graph(directory, manifest, texts or default_calibration_texts(), variant=options.variant)
    if manifest.vision is not None:  # two towers: the precisions whose graphs the export checked and kept
        have = {e.precision for e in manifest.engines if e.kind == "onnx"}
        missing = [p for p in options.precisions if p not in have]
        if missing:
            log.warning(
                "no %s graphs in this two-tower artifact (export with --precision auto or fp32,fp16); "
                "building %s plans only",
                ", ".join(missing),
                ", ".join(sorted(have & set(options.precisions))),
            )
            options = dataclasses.replace(options, precisions=tuple(p for p in options.precisions if p in have))
    entries = add_plans(directory, manifest, options)
    manifest.write(directory)
    return entries

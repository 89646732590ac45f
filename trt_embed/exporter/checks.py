"""Checks of what the exporter built, on an existing artifact: graph quality records and the checked fp16 graph.

No PyTorch here: `trt-embed build-engine` adds the fp16 graph of an artifact made earlier.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from trt_embed.engines.base import Batch
from trt_embed.engines.onnxruntime import OnnxRuntimeEngine
from trt_embed.errors import EngineError, ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.calibration import check_texts
from trt_embed.exporter.external_data import data_hashes
from trt_embed.manifest import EngineEntry, Manifest, TensorSpec, sha256_file
from trt_embed.runtime.batching.batch import pad
from trt_embed.runtime.outputs.scoring import cosine
from trt_embed.runtime.text.tokenizer import TextTokenizer

log = logging.getLogger("trt_embed.export")

FP16_MIN_COSINE = 0.999


def _base_graph(manifest: Manifest, variant: str, fused: bool = False) -> EngineEntry:
    for entry in manifest.engines:
        if (
            entry.kind == "onnx"
            and entry.target == "any"
            and entry.precision == "fp32"
            and entry.optimized == fused
            and entry.variant == variant
        ):
            return entry
    kind = "fused" if fused else "plain"
    raise ExportError(f"the artifact has no {kind} fp32 ONNX graph for variant {variant!r}; re-export the model")


def quality(got: np.ndarray, want: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """What the manifest records of a graph checked against its reference, and the per-input cosines."""
    cos = cosine(got, want)
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
    """Add `model.fp16.onnx` (mixed precision, see `fp16_from_onnx`) checked against the fp32 graph on CPU
    (on `check_texts(texts)`: short queries and long passages too);
    with `fused`, `model.optimized.fp16.onnx` from the onnxruntime-fused graph (what onnxruntime-cuda runs).

    Returns the existing entry if there is one. If the fp16 graph fails to build or load, or is not accurate
    enough, it is not kept: `strict` raises, otherwise a warning is logged and None returned.
    """
    existing = [
        e
        for e in manifest.engines
        if e.kind == "onnx"
        and e.target == "any"
        and e.precision == "fp16"
        and e.variant == variant
        and e.optimized == fused
    ]
    if existing:
        return existing[0]
    base = _base_graph(manifest, variant, fused)
    file = base.file.replace(".onnx", ".fp16.onnx")
    try:
        entry, cos = _checked_fp16_graph(directory, manifest, texts, base, file)
    except (ExportError, EngineError) as exc:  # a graph onnxruntime cannot convert or load
        (directory / file).unlink(missing_ok=True)
        if strict:
            raise ExportError(f"the fp16 graph of {base.file} failed: {exc}; use --precision fp32") from exc
        log.warning("the fp16 graph of %s failed, not shipping it: %s", base.file, exc)
        return None
    if cos.min() < FP16_MIN_COSINE:
        (directory / file).unlink()
        message = f"the fp16 graph is not accurate enough (min cosine vs fp32 {cos.min():.5f} < {FP16_MIN_COSINE})"
        if strict:
            raise ExportError(message + "; use --precision fp32")
        log.warning("%s; not shipping it", message)
        return None
    kept_fp32 = entry.extra["fp32_ops"]
    log.info("fp16 graph %s: min cosine vs fp32 %.6f (kept in fp32: %s)", file, cos.min(), ", ".join(kept_fp32))
    manifest.engines.append(entry)
    return entry


def _checked_fp16_graph(
    directory: Path, manifest: Manifest, texts: list[str], base: EngineEntry, file: str
) -> tuple[EngineEntry, np.ndarray]:
    """Convert `base` to fp16 as `file` and run both on `check_texts(texts)`: the entry and per-input cosines."""
    kept_fp32 = onnx_graph.fp16_from_onnx(directory / base.file, directory / file)
    tokenizer = TextTokenizer(directory / manifest.tokenizer.directory, manifest.tokenizer, manifest.max_seq_length)
    tokenized = tokenizer.encode(check_texts(texts))
    info = manifest.tokenizer
    feeds = pad(tokenized.ids, tokenized.type_ids, pad_id=info.pad_token_id, side=info.padding_side)
    feeds["pooling_mask"] = feeds["attention_mask"]
    batch = Batch("padded", feeds, tokenized.lengths)
    entry = dataclasses.replace(base, file=file, precision="fp16", sha256=sha256_file(directory / file))
    got, want = (_run_cpu(directory / e.file, e, batch) for e in (entry, base))
    entry.quality, cos = quality(got, want)
    entry.extra = {"fp32_ops": kept_fp32, "checked_against": base.file}
    return entry, cos


def add_packed_graphs(directory: Path, manifest: Manifest, variant: str = "base") -> list[EngineEntry]:
    """Add the packed form (`packed_from_onnx`) of the fused fp16 graph of `variant`
    (`model.optimized.fp16.packed.onnx`), what onnxruntime-cuda runs. Their operators run on CUDA only, so they
    cannot be checked here: each records the graph it was converted from, whose quality the manifest holds, and
    tests/gpu checks them against PyTorch on a GPU."""
    added: list[EngineEntry] = []
    fused = [
        e
        for e in manifest.engines
        if e.kind == "onnx" and e.target == "any" and e.optimized and e.variant == variant and e.precision == "fp16"
    ]
    for entry in fused:
        file = entry.file.replace(".onnx", ".packed.onnx")
        if any(e.file == file for e in manifest.engines):
            continue
        if not onnx_graph.packed_from_onnx(directory / entry.file, directory / file):
            log.info("%s has no attention onnxruntime can pack; no packed graph", entry.file)
            return added
        packed = dataclasses.replace(
            entry,
            file=file,
            target="cuda",
            sha256=sha256_file(directory / file),
            extra={"packed": True, "converted_from": entry.file, "checked": "on CUDA only (tests/gpu)"},
        )
        manifest.engines.append(packed)
        added.append(packed)
    return added


def checked_onnx_entry(
    directory: Path,
    file: str,
    batch: Batch,
    reference: np.ndarray,
    *,
    precision: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    tools: dict[str, str],
    optimized: bool = False,
    variant: str = "base",
    modality: str = "text",
) -> tuple[EngineEntry, np.ndarray]:
    """The manifest entry of a portable ONNX graph just written, run on CPU against `reference` (its pooled
    output for `batch`), with the quality recorded; also returns the per-input cosines."""
    entry = EngineEntry(
        file=file,
        kind="onnx",
        precision=precision,
        target="any",
        optimized=optimized,
        variant=variant,
        inputs=inputs,
        outputs=outputs,
        tools=tools,
        sha256=sha256_file(directory / file),
        extra=data_hashes(directory / file),
        modality=modality,
    )
    entry.quality, cos = quality(_run_cpu(directory / file, entry, batch), reference)
    return entry, cos


def _run_cpu(path: Path, entry: EngineEntry, batch: Batch) -> np.ndarray:
    engine = OnnxRuntimeEngine(path, entry, threads=2)
    try:
        return engine.infer(batch, ["sentence_embedding"])["sentence_embedding"]
    finally:
        engine.close()

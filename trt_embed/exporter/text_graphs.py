"""The text graphs of one variant: the fp32 ONNX graph traced from PyTorch and checked against it, then its fused
and int8 copies, each kept only where it passes its accuracy rule."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_embed.engines.base import Batch
from trt_embed.engines.onnxruntime import OnnxRuntimeEngine
from trt_embed.errors import ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.calibration import check_texts
from trt_embed.exporter.checks import checked_onnx_entry
from trt_embed.exporter.graph import EmbeddingGraph
from trt_embed.exporter.int8 import INT8_MIN_COSINE, INT8_MIN_MEAN_COSINE, calibration_passages, static_int8_entry
from trt_embed.exporter.models.decoder_gqa import gqa_engines
from trt_embed.exporter.options import EXACT_MIN_COSINE, ExportOptions, precisions, tool_versions
from trt_embed.manifest import EngineEntry, TensorSpec, TokenizerInfo
from trt_embed.runtime.batching.batch import pad
from trt_embed.runtime.text.tokenizer import TextTokenizer
from trt_embed.zoo import ZooEntry

log = logging.getLogger("trt_embed.export")


@dataclasses.dataclass(frozen=True)
class TextGraphs:
    """What every graph of one text artifact is traced and checked with."""

    out: Path
    tokenizer: TextTokenizer
    info: TokenizerInfo
    entry: ZooEntry
    config: dict[str, Any]
    calibration: list[str]
    opts: ExportOptions

    def example(self, graph: EmbeddingGraph, texts: list[str]) -> tuple[torch.Tensor, ...]:
        """`texts` tokenized and padded as the graph's inputs, in its input order."""
        tokenized = self.tokenizer.encode(texts)
        arrays = pad(tokenized.ids, tokenized.type_ids, pad_id=self.info.pad_token_id, side=self.info.padding_side)
        arrays["pooling_mask"] = arrays["attention_mask"]
        return tuple(torch.from_numpy(arrays[name]) for name in graph.input_names)


@dataclasses.dataclass
class Checker:
    """One variant's graphs, checked on the calibration texts against the PyTorch outputs."""

    graphs: TextGraphs
    variant: str
    feeds: Batch
    computed: dict[str, np.ndarray]  # PyTorch's outputs by name; `sentence_embedding` first
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def prefix(self) -> str:
        return "" if self.variant == "base" else f"variants/{self.variant}/"

    def measured(self, file: str, precision: str, optimized: bool) -> tuple[EngineEntry, np.ndarray]:
        reference = next(iter(self.computed.values()))
        return checked_onnx_entry(
            self.graphs.out,
            file,
            self.feeds,
            reference,
            precision=precision,
            inputs=self.inputs,
            outputs=self.outputs,
            tools=tool_versions(),
            optimized=optimized,
            variant=self.variant,
        )

    def check_other_outputs(self, entry: EngineEntry) -> None:
        """Every output besides `sentence_embedding` (checked by `measured`) against PyTorch, row by row."""
        names = [name for name in self.computed if name != "sentence_embedding"]
        engine = OnnxRuntimeEngine(self.graphs.out / entry.file, entry, threads=2)
        got = engine.infer(self.feeds, names)
        engine.close()
        mask = self.feeds.arrays["attention_mask"].astype(bool)
        for name in names:
            want, have = self.computed[name][mask], got[name][mask]  # real tokens only
            want, have = want.reshape(len(want), -1), have.reshape(len(have), -1)
            if not np.allclose(have, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max()))):
                raise ExportError(
                    f"the exported ONNX graph's {name} does not match PyTorch (max difference "
                    f"{float(np.abs(have - want).max()):.3g}); this is a bug in the exporter, please report it"
                )


def output_spec(name: str, value: np.ndarray) -> TensorSpec:
    """Pooled outputs are [batch, D]; token outputs [batch, sequence] or [batch, sequence, D]."""
    if name == "sentence_embedding":
        return TensorSpec(name, "float32", ["batch", int(value.shape[-1])])
    return TensorSpec(name, "float32", ["batch", "sequence", *([int(value.shape[-1])] if value.ndim == 3 else [])])


def export_checked_graphs(
    graph: EmbeddingGraph, graphs: TextGraphs, variant: str = "base", release: bool = False
) -> list[EngineEntry]:
    """Export, check and (optionally) fuse and quantize one graph; files of variants go to `variants/NAME/`.
    `release` frees the graph's torch weights once the fp32 ONNX graph is checked."""
    checker = _checker(graph, graphs, variant)
    (graphs.out / checker.prefix).mkdir(parents=True, exist_ok=True)
    by_length = sorted(graphs.calibration, key=len)  # traced on two lengths (padding present), checked on more
    example = graphs.example(graph, [by_length[0], by_length[-1]])
    log.info("exporting the fp32 ONNX graph%s", _named(variant))
    onnx_graph.onnx_from_graph(graph, example, graphs.out / f"{checker.prefix}model.onnx")
    log.info("checking it against PyTorch on %d texts", len(graphs.calibration))
    base, cos = checker.measured(f"{checker.prefix}model.onnx", "fp32", False)
    if cos.min() < EXACT_MIN_COSINE:
        raise ExportError(
            f"the exported ONNX graph does not match PyTorch (min cosine {cos.min():.6f}); this is a bug in the "
            f"{graphs.entry.architecture} exporter, please report it"
        )
    checker.check_other_outputs(base)
    attention = _fused_attention(graph, example, checker)  # traced from the torch graph: before it is released
    if release:
        graph.to("meta")  # the torch weights are done with: free them before the ONNX passes (export memory)
    engines = [base]
    onnx_only = graphs.opts.engine != "tensorrt"
    fused = _fused(checker) if onnx_only and graphs.opts.fuse and graphs.entry.ort_fusion else None
    engines += [fused] if fused is not None else []
    engines += attention
    if onnx_only and "int8" in precisions(graphs.opts.precision):
        engines += _int8(checker, fused.file if fused is not None else base.file)
        if any(e.precision == "int8" for e in engines):
            engines += _static_int8(graph, checker)
    return engines


def _fused_attention(graph: EmbeddingGraph, example: tuple[torch.Tensor, ...], checker: Checker) -> list[EngineEntry]:
    """Decoders with `fused_attention`: the fp16 graph with fused attention for onnxruntime-cuda, if it traces."""
    opts = checker.graphs.opts
    if not opts.fused_attention or opts.engine == "tensorrt" or "fp16" not in precisions(opts.precision):
        return []
    out, measured, limit = checker.graphs.out, checker.measured, checker.graphs.tokenizer.max_length
    return gqa_engines(graph, example, out, checker.prefix, measured, onnx_graph.onnx_from_graph, limit)


def _named(variant: str) -> str:
    return "" if variant == "base" else f" (variant {variant})"


def _checker(graph: EmbeddingGraph, graphs: TextGraphs, variant: str) -> Checker:
    check_inputs = graphs.example(graph, check_texts(graphs.calibration))  # every length class, short queries too
    with torch.no_grad():
        computed = [t.numpy() for t in graph(*check_inputs)]
    return Checker(
        graphs,
        variant,
        Batch.padded({name: t.numpy() for name, t in zip(graph.input_names, check_inputs, strict=True)}),
        dict(zip(graph.output_names, computed, strict=True)),
        [TensorSpec(name, "int64", ["batch", "sequence"]) for name in graph.input_names],
        [output_spec(name, value) for name, value in zip(graph.output_names, computed, strict=True)],
    )


def _fused(checker: Checker) -> EngineEntry | None:
    """The onnxruntime-fused copy of the fp32 graph, if it is as exact as the graph."""
    out, prefix, graphs = checker.graphs.out, checker.prefix, checker.graphs
    log.info("fusing the graph (onnxruntime transformer fusions)%s", _named(checker.variant))
    onnx_graph.fused_from_onnx(
        out / f"{prefix}model.onnx",
        out / f"{prefix}model.optimized.onnx",
        model_type=str(graphs.entry.ort_fusion),
        num_heads=int(graphs.config["num_attention_heads"]),
        hidden_size=int(graphs.config["hidden_size"]),
    )
    fused, cos = checker.measured(f"{prefix}model.optimized.onnx", "fp32", True)
    if cos.min() < EXACT_MIN_COSINE:
        log.warning("fused graph is inaccurate (min cosine %.6f); not shipping it", cos.min())
        (out / fused.file).unlink()
        return None
    checker.check_other_outputs(fused)
    return fused


def _int8(checker: Checker, source: str) -> list[EngineEntry]:
    """The dynamic int8 copy of `source` (the fused graph where there is one), kept if accurate enough."""
    out, file = checker.graphs.out, f"{checker.prefix}model.int8.onnx"
    log.info("quantizing to int8 (dynamic, per channel)%s", _named(checker.variant))
    onnx_graph.int8_from_onnx(out / source, out / file)
    int8, cos = checker.measured(file, "int8", source.endswith("model.optimized.onnx"))
    if cos.mean() >= INT8_MIN_MEAN_COSINE and cos.min() >= INT8_MIN_COSINE:
        return [int8]
    (out / file).unlink()
    message = (
        f"int8 quantization is not accurate enough for this model (cosine vs fp32: mean "
        f"{cos.mean():.4f}, min {cos.min():.4f}; needs >= {INT8_MIN_MEAN_COSINE} / {INT8_MIN_COSINE})"
    )
    if precisions(checker.graphs.opts.precision)["int8"]:
        raise ExportError(message + "; export with --precision fp32")
    log.warning("%s; the artifact has fp32 graphs only", message)
    return []


def _static_int8(graph: EmbeddingGraph, checker: Checker) -> list[EngineEntry]:
    """The static (calibrated) int8 graph, calibrated one passage at a time."""
    graphs = checker.graphs
    one_by_one = [
        {n: t.numpy() for n, t in zip(graph.input_names, graphs.example(graph, [text]), strict=True)}
        for text in calibration_passages(graphs.calibration)
    ]
    static = static_int8_entry(graphs.out, checker.prefix, one_by_one, checker.measured)
    return [] if static is None else [static]

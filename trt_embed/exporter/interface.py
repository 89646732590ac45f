"""The one interface every model exporter implements, and the one place that refuses what an exporter cannot do.

An exporter turns one kind of checkpoint into an artifact: `text.TEXT` (encoders and decoder LLMs: one text
graph, its heads and variants), `two_tower.TWO_TOWER` (CLIP, SigLIP: a text and an image graph), `vlm.VLM`
(vision-language embedders: a vision graph and a decoder graph). `export.EXPORTERS` maps the zoo's `family` to
the exporter; `export_model` checks the options against its `supports`, runs it in a scratch directory, builds
the TensorRT plans it allows and writes the manifest.

Adding an exporter (e.g. a cross-encoder / sequence classifier / LLM reranker: a text encoder with a
classification head that takes (query, document) pairs):
1. a module `exporter/NAME.py` with an object that has `label` (how errors name these models), `supports`
   (a `Supports`: what the options may ask of it) and `export(job) -> Manifest`: write the tokenizer and the
   checked ONNX graphs into `job.out` (see `text_graphs.export_checked_graphs` for the check-against-PyTorch
   steps) and return the manifest with every field set except the TensorRT plans, without writing it;
2. its architectures in trt_embed/model_zoo.yaml with a `family` of their own (+ a tiny test model in
   tests/tiny_models.py: tests/test_zoo.py fails otherwise);
3. one line in `export.EXPORTERS`: `"FAMILY": NAME_EXPORTER`;
4. the runtime half: a route (trt_embed/runtime) that serves what the manifest records.
Options the exporter does not support are refused here, by `refuse_unsupported`, before any weight is read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from trt_embed.errors import ExportError
from trt_embed.exporter.options import ExportOptions, precisions
from trt_embed.exporter.source import SentenceTransformerConfig
from trt_embed.manifest import Manifest
from trt_embed.zoo import ZooEntry


@dataclasses.dataclass(frozen=True)
class Supports:
    """What the export options may ask of an exporter."""

    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")  # ONNX graph precisions it makes
    plans: bool = True  # TensorRT plans (`--engine tensorrt|all`)
    lora: bool = True  # `--lora NAME=DIR` variants
    pooling: bool = True  # `--pooling` overrides
    matryoshka: bool = True  # `--matryoshka-dims`


@dataclasses.dataclass(frozen=True)
class ExportJob:
    """One export: where to write, what was asked for, and what was read of the checkpoint."""

    out: Path  # the scratch artifact directory (moved into place when the export succeeds)
    model: str  # as the user named it (a directory or a hub id)
    model_dir: Path  # where it is on disk
    st: SentenceTransformerConfig  # its sentence-transformers pipeline (transformer_dir: the HF model)
    config: dict[str, Any]  # config.json, with the zoo's aliases
    entry: ZooEntry
    opts: ExportOptions


class ModelExporter(Protocol):
    label: str  # "text encoders", "two-tower models", ...: how refusals name these models
    supports: Supports

    def export(self, job: ExportJob) -> Manifest:
        """Write the tokenizer, graphs and files into `job.out`; the manifest, plans and writing come after."""
        ...


def refuse_unsupported(exporter: ModelExporter, opts: ExportOptions, architecture: str) -> None:
    """Raise the one error for the first option `exporter` cannot honour."""
    can, name = exporter.supports, f"{architecture}: "
    if opts.lora and not can.lora:
        raise ExportError(f"{name}LoRA variants are not supported for {exporter.label} yet")
    if opts.engine != "onnx" and not can.plans:
        raise ExportError(f"{name}TensorRT plans are not built for {exporter.label} yet; export with --engine onnx")
    required = [p for p, must in precisions(opts.precision).items() if must and p not in can.precisions]
    if required:
        raise ExportError(
            f"{name}{', '.join(required)} graphs are not made for {exporter.label}; "
            f"export with --precision {','.join(can.precisions)} (or auto)"
        )
    if opts.pooling is not None and not can.pooling:
        raise ExportError(f"{name}--pooling does not apply to {exporter.label}: their pooling is part of the model")
    if opts.matryoshka_dims is not None and not can.matryoshka:
        raise ExportError(f"{name}{exporter.label} are not exported with Matryoshka dimensions")

"""Vision-language embedders (DSE / Qwen2-VL, Qwen3-VL-Embedding, e5-v / LLaVA-NeXT, VLM2Vec, Nemotron-VL):
the vision tower with its projector or merger and the decoder with its pooling, as two graphs of one artifact,
plus the token embedding table. The graph contract and the runtime half: trt_embed/runtime/vlm/families.py.

How a vision-language model plugs in, export side:
- a zoo row with `family: vlm` and `loader: "package.module:NAME"`, NAME an object with the `VlmLoader` methods
  (exporter/models/vlm_parts.py):
  `parameters(model_dir, config)` counts the parameters without loading weights (the memory check runs before any
  weight is read), and `load(model_dir, entry, config)` returns `VlmParts`: the torch modules (our own code where
  the hub ships remote code: no trust_remote_code) and the runtime record;
- a runtime `VisionProcessor` registered in runtime/vlm/families.py under `record["family"]`.
Everything else is shared: the exporter saves the table and arrays, prepares check inputs with the family's own
runtime processor (export and serving share one preprocessing), traces both graphs with dynamic image-token and
batch axes, checks each against the torch modules (fp32: cosine >= 0.99999) and keeps fp16 copies that pass the
accuracy rule. What the options may ask of it: `VlmExporter.supports` (no LoRA, no int8, no TensorRT plans yet).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_embed.engines.base import Batch
from trt_embed.engines.onnxruntime import OnnxRuntimeEngine
from trt_embed.errors import ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.checks import quality
from trt_embed.exporter.interface import ExportJob, Supports
from trt_embed.exporter.models.decoder import resolve_class
from trt_embed.exporter.models.vlm_parts import VlmLoader, VlmParts
from trt_embed.exporter.options import EXACT_MIN_COSINE, ExportOptions, normalized_by_default, precisions, tool_versions
from trt_embed.exporter.source import source_record
from trt_embed.exporter.tokenizer import tokenizer_hashes, tokenizer_to_artifact
from trt_embed.exporter.two_tower import check_images, reduced_copy
from trt_embed.manifest import EngineEntry, Manifest, Pooling, TensorSpec, sha256_file
from trt_embed.poolers.torch_pooling import Pooling as PoolingHead
from trt_embed.runtime.text.prepare import Preparer
from trt_embed.runtime.types import EmbedRequest, Interleaved, PreparedInput
from trt_embed.runtime.vlm.batch import VlmBatcher
from trt_embed.runtime.vlm.prepare import VlmPreparer

log = logging.getLogger("trt_embed.export")
# fp32 weights in torch + the traced ONNX copy; each graph's torch weights are freed once it is traced, before the
# onnxruntime check loads it (an estimate from the steps' copies, not measured on a multi-billion model)
EXPORT_BYTES_PER_PARAMETER = 8


class PooledDecoder(torch.nn.Module):
    """The family's decoder followed by the model's pooling over the attention mask."""

    def __init__(self, decoder: torch.nn.Module, mode: str) -> None:
        super().__init__()
        self.decoder = decoder
        self.pool = PoolingHead(mode)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.pool(self.decoder(inputs_embeds, attention_mask, *rest), attention_mask)


def machine_memory() -> int:
    """Physical memory in bytes (TRT_EMBED_EXPORT_MEMORY_GB overrides it, e.g. for a container's limit)."""
    override = os.environ.get("TRT_EMBED_EXPORT_MEMORY_GB")
    if override:
        return int(float(override) * 2**30)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_export_memory(parameters: int, architecture: str) -> None:
    """Refuse, before any weight is read, a model whose fp32 export cannot fit this machine's memory."""
    need, have = parameters * EXPORT_BYTES_PER_PARAMETER, machine_memory()
    if need > have:
        raise ExportError(
            f"{architecture} has {parameters / 1e9:.2f}B parameters: exporting it needs about {need / 2**30:.0f} GiB "
            f"of memory ({EXPORT_BYTES_PER_PARAMETER} bytes per parameter: the fp32 weights and the traced ONNX "
            f"graph), and this machine has {have / 2**30:.0f} GiB. Export on a machine with more "
            "memory (the artifact is portable), or set TRT_EMBED_EXPORT_MEMORY_GB if the limit is wrong."
        )


class VlmExporter:
    label = "vision-language models"
    supports = Supports(precisions=("fp32", "fp16"), plans=False, lora=False)

    def export(self, job: ExportJob) -> Manifest:
        entry, opts, model_dir = job.entry, job.opts, job.st.transformer_dir
        loader: VlmLoader = resolve_class(entry.loader)
        check_export_memory(loader.parameters(model_dir, job.config), entry.architecture)
        log.info("loading the %s weights into PyTorch", entry.architecture)
        parts = loader.load(model_dir, entry, job.config)
        max_len = int(opts.max_seq_len or parts.max_positions)
        if max_len > parts.max_positions:
            raise ExportError(f"max sequence length {max_len} exceeds the model's {parts.max_positions} positions")
        info = tokenizer_to_artifact(
            model_dir, job.out, model_config=job.config, padding_side=entry.padding_side, do_lower_case=False
        )
        arrays = _save_arrays(job.out, parts)
        hidden = int(parts.embeddings.shape[1])
        manifest = Manifest(
            architecture=entry.architecture,
            family=entry.family,
            hidden_size=hidden,
            embedding_dim=hidden,
            pooling=Pooling(mode=opts.pooling or parts.pooling),
            max_seq_length=max_len,
            tokenizer=info,
            source=source_record(job.model, model_dir, opts.revision, model_dir),
            normalize=normalized_by_default(opts, None),
            matryoshka_dimensions=sorted(opts.matryoshka_dims)
            if opts.matryoshka_dims is not None
            else parts.matryoshka,
            prompts=parts.prompts,
            vocab_size=int(parts.embeddings.shape[0]),
            vlm={**parts.record, "vision_graph": "vision.onnx", "embeddings": "embeddings.npy", "arrays": arrays},
        )
        manifest.engines = _graphs_of(job.out, parts, manifest, opts)
        manifest.files = {
            **tokenizer_hashes(job.out, info),
            **{name: sha256_file(job.out / name) for name in ("embeddings.npy", *arrays.values())},
        }
        return manifest


VLM = VlmExporter()


def _save_arrays(out: Path, parts: VlmParts) -> dict[str, str]:
    """The token embedding table and the processor's arrays as .npy files; returns the arrays' files by name."""
    np.save(out / "embeddings.npy", parts.embeddings.detach().float().numpy())
    arrays = {name: f"{name}.npy" for name in parts.arrays}
    for name, value in parts.arrays.items():
        np.save(out / arrays[name], np.asarray(value, dtype=np.float32))
    return arrays


def _graphs_of(out: Path, parts: VlmParts, manifest: Manifest, opts: ExportOptions) -> list[EngineEntry]:
    """The vision graph and the pooled decoder graph, each checked against its torch module on inputs the
    runtime's own processor prepared."""
    wanted, tools = precisions(opts.precision), tool_versions()
    preparer = VlmPreparer(Preparer(out, manifest))
    items = check_inputs(preparer, opts.calibration_texts)
    vision = parts.vision.eval()
    images = [image for item in items for image in item.features["images"]]
    batches = _decoder_batches(out, vision, parts, manifest, preparer, items)  # torch vision, before it is freed
    engines = _vision_graphs(out, vision, parts, preparer, images, wanted, tools)
    decoder = PooledDecoder(parts.decoder, manifest.pooling.mode).eval()
    return engines + _decoder_graphs(out, decoder, parts, manifest, batches, wanted, tools)


def check_inputs(preparer: VlmPreparer, texts: list[str] | None) -> list[PreparedInput]:
    """Texts, images of several sizes and shapes, and a text with its image, prepared as the runtime does."""
    words = texts or ["a short query", "what is shown in this picture of a river and a city at night?", "hello"]
    pictures = check_images()[:4]
    inputs: list[Any] = [*words[:3], *pictures, Interleaved((pictures[1], words[0]))]
    return preparer.prepare(EmbedRequest(inputs=inputs), "base").items


def _torch_vision(vision: torch.nn.Module, names: list[str]) -> Any:
    def run(feeds: dict[str, np.ndarray], costs: list[int]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = vision(*(torch.from_numpy(feeds[n]) for n in names))
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip(("image_features", "deepstack_features"), (t.numpy() for t in out), strict=False))

    return run


def _checked(
    out: Path, file: str, names: list[str], feeds: dict[str, np.ndarray], want: np.ndarray, **entry_fields: Any
) -> tuple[EngineEntry, np.ndarray]:
    """The manifest entry of a graph just written, its first output run on CPU against `want`."""
    entry = EngineEntry(file=file, kind="onnx", target="any", sha256=sha256_file(out / file), **entry_fields)
    engine = OnnxRuntimeEngine(out / file, entry, threads=2)
    try:
        got = engine.infer(Batch("padded", feeds, [1] * len(want)), [names[0]])[names[0]]
    finally:
        engine.close()
    entry.quality, cos = quality(got.reshape(len(want), -1), want.reshape(len(want), -1))
    return entry, cos


def _graphs(
    out: Path,
    module: torch.nn.Module,
    file: str,
    trace: dict[str, np.ndarray],
    check: dict[str, np.ndarray],
    axes: dict[str, dict[int, str]],
    outputs: list[TensorSpec],
    wanted: dict[str, bool],
    **fields: Any,
) -> list[EngineEntry]:
    """Trace `module` on `trace`, check it (and its fp16 copy) on `check` against torch."""
    names = list(check)
    with torch.no_grad():
        result = module(*(torch.from_numpy(check[n]) for n in names))
    want = (result[0] if isinstance(result, tuple) else result).numpy()
    example = tuple(torch.from_numpy(trace[n]) for n in names)
    onnx_graph.onnx_from_module(module, example, out / file, names, [o.name for o in outputs], axes)
    module.to("meta")  # the torch weights are done with: free them before onnxruntime loads the graph
    inputs = [
        TensorSpec(n, str(v.dtype), [axes.get(n, {}).get(d, s) for d, s in enumerate(v.shape)])
        for n, v in check.items()
    ]
    output_names = [o.name for o in outputs]

    def measured(name: str, precision: str) -> tuple[EngineEntry, np.ndarray]:
        return _checked(
            out, name, output_names, check, want, precision=precision, inputs=inputs, outputs=outputs, **fields
        )

    base, cos = measured(file, "fp32")
    if cos.min() < EXACT_MIN_COSINE:
        raise ExportError(f"the exported {file} does not match PyTorch (min cosine {cos.min():.6f}); please report it")
    engines = [base]
    if "fp16" in wanted:
        reduced = reduced_copy(out, file, "fp16", measured)
        if reduced is not None:
            engines.append(reduced)
        elif wanted["fp16"]:
            raise ExportError(f"the fp16 copy of {file} is not accurate enough; export with fp32")
    return engines


def _vision_graphs(
    out: Path,
    vision: torch.nn.Module,
    parts: VlmParts,
    preparer: VlmPreparer,
    images: list[Any],
    wanted: dict[str, bool],
    tools: dict[str, str],
) -> list[EngineEntry]:
    log.info("exporting the vision tower and checking it against PyTorch")
    processor = preparer.processor
    trace = processor.vision_feeds(images[1:3])
    check = processor.vision_feeds(images)
    deep = int(parts.record.get("deepstack_layers", 0))
    outputs = [TensorSpec("image_features", "float32", ["image_tokens", "hidden"])]
    axes = {**parts.vision_axes, "image_features": {0: "image_tokens"}}
    if deep:
        outputs.append(TensorSpec("deepstack_features", "float32", [deep, "image_tokens", "hidden"]))
        axes["deepstack_features"] = {1: "image_tokens"}
    feeds = {n: check[n] for n in parts.vision_inputs}
    return _graphs(
        out,
        vision,
        "vision.onnx",
        {n: trace[n] for n in feeds},
        feeds,
        axes,
        outputs,
        wanted,
        tools=tools,
        modality="image",
    )


def _decoder_batches(
    out: Path,
    vision: torch.nn.Module,
    parts: VlmParts,
    manifest: Manifest,
    preparer: VlmPreparer,
    items: list[PreparedInput],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The decoder's check batch (every input) and trace batch (two rows of different lengths: padding)."""
    batcher = VlmBatcher(out, manifest, preparer.processor)
    run = _torch_vision(vision, parts.vision_inputs)
    by_length = sorted(items, key=lambda i: len(i.features["input_ids"]))
    return batcher.batch(items, run).arrays, batcher.batch([by_length[0], by_length[-1]], run).arrays


def _decoder_graphs(
    out: Path,
    decoder: PooledDecoder,
    parts: VlmParts,
    manifest: Manifest,
    batches: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    wanted: dict[str, bool],
    tools: dict[str, str],
) -> list[EngineEntry]:
    log.info("exporting the decoder and checking it against PyTorch")
    check, trace = batches
    rows = "position_rows" in parts.record and int(parts.record["position_rows"]) > 1
    axes = {
        "inputs_embeds": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "position_ids": {1: "batch", 2: "sequence"} if rows else {0: "batch", 1: "sequence"},
        "deepstack_embeds": {1: "batch", 2: "sequence"},
        "sentence_embedding": {0: "batch"},
    }
    axes = {k: v for k, v in axes.items() if k in check or k == "sentence_embedding"}
    outputs = [TensorSpec("sentence_embedding", "float32", ["batch", manifest.embedding_dim])]
    return _graphs(out, decoder, "model.onnx", dict(trace), dict(check), axes, outputs, wanted, tools=tools)

"""The text exporter: encoders and decoder LLMs (the zoo's encoder families) -> one text graph per variant, with
its head (dense, SPLADE, multi-vector, BGE-M3), checked against PyTorch, plus its fp16, fused, int8 and packed
copies, the checkpoint's own weight variants (jina-v3's tasks) and merged LoRA adapters."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.calibration import default_calibration_texts
from trt_embed.exporter.checks import add_packed_graphs, ensure_fp16_graph
from trt_embed.exporter.colbert import colbert_config, mark_special
from trt_embed.exporter.encoders import WeightVariants, build_encoder
from trt_embed.exporter.graph import EmbeddingGraph, dense_from_st
from trt_embed.exporter.heads import MultiVectorGraph, head_graph, multi_vector_config, special_token_ids
from trt_embed.exporter.interface import ExportJob, Supports
from trt_embed.exporter.models.recipe import apply_recipe, ensure_eos, recipe_matryoshka
from trt_embed.exporter.options import ExportOptions, normalized_by_default, precisions
from trt_embed.exporter.source import SentenceTransformerConfig, source_record
from trt_embed.exporter.sparse_query import save_query_table
from trt_embed.exporter.text_graphs import TextGraphs, export_checked_graphs
from trt_embed.exporter.tokenizer import tokenizer_hashes, tokenizer_to_artifact
from trt_embed.exporter.variants import calibration_ranges, merged_lora_graph
from trt_embed.manifest import EngineEntry, Manifest, Pooling
from trt_embed.runtime.text.tokenizer import TextTokenizer
from trt_embed.zoo import ZooEntry

log = logging.getLogger("trt_embed.export")
SPECIAL_ROLES = ("cls", "sep", "bos", "eos", "pad", "unk")  # BGE-M3's sparse weights skip these tokens


class TextExporter:
    label = "text encoders"
    supports = Supports()

    def export(self, job: ExportJob) -> Manifest:
        st = apply_recipe(job.st, job.entry)
        if job.entry.recipe.get("checkpoint") == "colbert":  # Stanford ColBERT: HF_ColBERT + artifact.metadata
            st = colbert_config(st, st.transformer_dir, int(job.config["hidden_size"]))
        graphs = _text_graphs(job, st)
        pooling = Pooling(
            mode=job.opts.pooling or st.pooling or job.entry.default_pooling, include_prompt=st.include_prompt
        )
        log.info("loading the %s weights into PyTorch", job.entry.architecture)
        head = _head(st, job.entry)
        special = special_token_ids(job.out / "tokenizer")
        head_config = multi_vector_config(st.multi_vector, special, job.out / "tokenizer") if st.multi_vector else {}

        def build() -> EmbeddingGraph:
            return _build_graph(st, job.entry, pooling, job.opts, head, special, head_config)

        graph = build()
        with torch.no_grad():  # the calibration embeddings (int8 output ranges), before weights may be released
            pooled = graph(*graphs.example(graph, graphs.calibration))[0].numpy()
        variants = isinstance(graph.encoder, WeightVariants)
        engines = export_checked_graphs(graph, graphs, release=not variants)
        matryoshka = _matryoshka(job.config, job.opts, job.entry, int(pooled.shape[-1]))
        prompts, query_files, head_config = _prompts_and_query_table(job, st, head_config)
        adapters: dict[str, dict[str, Any]] = {}
        if variants:  # adapters stored in the checkpoint, e.g. jina-v3's tasks
            engines += _weight_variants(graph, graphs, prompts, adapters)
        engines += _lora_variants(build, graphs, adapters)
        manifest = Manifest(
            architecture=job.entry.architecture,
            family=job.entry.family,
            kind=head or "dense",
            special_token_ids=sorted({special[r] for r in SPECIAL_ROLES if r in special}) if head == "bge_m3" else [],
            head_config=head_config,
            hidden_size=int(job.config["hidden_size"]),
            embedding_dim=int(pooled.shape[-1]),
            pooling=pooling,
            max_seq_length=graphs.tokenizer.max_length,
            tokenizer=graphs.info,
            source=source_record(job.model, job.model_dir, job.opts.revision, st.transformer_dir),
            normalize=bool(job.opts.normalize) if head == "splade" else normalized_by_default(job.opts, st.normalize),
            matryoshka_dimensions=matryoshka,
            matryoshka_transform=job.entry.matryoshka_transform,
            prompts=prompts,
            default_prompt_name=st.default_prompt_name,
            uses_token_type_ids=job.entry.token_type_ids,
            vocab_size=int(job.config["vocab_size"]) if job.config.get("vocab_size") else None,
            dense_layers=len(st.dense),
            lora_adapters=adapters,
            calibration=calibration_ranges(pooled, matryoshka),
            engines=engines,
            files={**tokenizer_hashes(job.out, graphs.info), **query_files},
        )
        _derived_graphs(job.out, manifest, graphs.calibration, job.opts)
        return manifest


TEXT = TextExporter()


def _text_graphs(job: ExportJob, st: SentenceTransformerConfig) -> TextGraphs:
    """The artifact's tokenizer, written, and what every graph is traced and checked with."""
    max_len = _max_seq_length(job.config, st, job.opts, job.entry, job.model_dir)
    info = tokenizer_to_artifact(
        st.transformer_dir,
        job.out,
        model_config=job.config,
        padding_side=job.entry.padding_side,
        do_lower_case=st.do_lower_case,
    )
    ensure_eos(job.out / "tokenizer", st.transformer_dir, job.entry, job.config)
    if job.entry.recipe.get("checkpoint") == "colbert":
        mark_special(job.out / "tokenizer", st.transformer_dir)
    tokenizer = TextTokenizer(job.out / "tokenizer", info, max_len)
    calibration = job.opts.calibration_texts or default_calibration_texts()
    return TextGraphs(job.out, tokenizer, info, job.entry, job.config, calibration, job.opts)


def _prompts_and_query_table(
    job: ExportJob, st: SentenceTransformerConfig, head_config: dict[str, Any]
) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """The manifest's prompts; for inference-free SPLADE the query weight table (queries by a table, documents
    by the graph) with its files and head_config."""
    instructions = {str(k): str(v) for k, v in (job.config.get("task_instructions") or {}).items()}  # jina-v3
    prompts = {**job.entry.prompts, **instructions, **st.prompts}
    if st.sparse_query is None:
        return prompts, {}, head_config
    query_config, query_files = save_query_table(st.sparse_query, job.out, int(job.config["vocab_size"]))
    prompts = {"query": "", "document": "", **prompts}  # the routes are chosen by these prompt names
    return prompts, query_files, {**head_config, **query_config}


def _weight_variants(
    graph: EmbeddingGraph, graphs: TextGraphs, prompts: dict[str, str], adapters: dict[str, dict[str, Any]]
) -> list[EngineEntry]:
    """The graphs of each weight variant the checkpoint carries, recorded in `adapters`."""
    encoder = graph.encoder
    assert isinstance(encoder, WeightVariants)
    engines = []
    for name in encoder.variant_names():
        encoder.use_variant(name)
        engines += export_checked_graphs(graph, graphs, name)
        adapters[name] = {**encoder.variant_record(name), "prompt_name": name if name in prompts else None}
    encoder.use_variant(None)
    return engines


def _lora_variants(build: Any, graphs: TextGraphs, adapters: dict[str, dict[str, Any]]) -> list[EngineEntry]:
    """The graphs of each `--lora NAME=DIR` adapter merged into a fresh copy of the graph."""
    engines = []
    for name, adapter_dir in graphs.opts.lora.items():
        if name in adapters:
            raise ExportError(f"--lora {name}=...: the checkpoint already has a variant {name!r}; choose another name")
        variant_graph, adapters[name] = merged_lora_graph(build, Path(adapter_dir), name)
        engines += export_checked_graphs(variant_graph, graphs, name)
    return engines


def _derived_graphs(out: Path, manifest: Manifest, calibration: list[str], opts: ExportOptions) -> None:
    """The fp16 graphs and packed graphs, made from the checked fp32 ONNX graphs on disk."""
    wanted = precisions(opts.precision)
    for variant in sorted({e.variant for e in manifest.engines} if "fp16" in wanted else ()):
        log.info("making the mixed-precision fp16 graph and checking it against fp32 (variant %s)", variant)
        ensure_fp16_graph(out, manifest, calibration, variant=variant, strict=wanted["fp16"])
        if any(e.optimized and e.precision == "fp32" and e.variant == variant for e in manifest.engines):
            ensure_fp16_graph(out, manifest, calibration, variant=variant, strict=wanted["fp16"], fused=True)
    if opts.engine != "tensorrt":
        for variant in sorted({e.variant for e in manifest.engines}):
            if add_packed_graphs(out, manifest, variant):
                log.info("packed graphs for onnxruntime-cuda (no padded tokens computed) of variant %s", variant)


def _matryoshka(config: dict[str, Any], opts: ExportOptions, entry: ZooEntry, embedding_dim: int) -> list[int] | None:
    """None: not Matryoshka; []: any dimension; else the allowed dimensions."""
    if opts.matryoshka_dims is not None:
        return sorted(set(opts.matryoshka_dims))
    dims = config.get("matryoshka_dimensions")
    if dims:
        return sorted(int(d) for d in dims)
    return [] if config.get("is_matryoshka") else recipe_matryoshka(entry, embedding_dim)


def _max_seq_length(
    config: dict[str, Any], st: SentenceTransformerConfig, opts: ExportOptions, entry: ZooEntry, model_dir: Path
) -> int:
    positions = int(config.get("max_position_embeddings", 512))
    if entry.loader.startswith(("Roberta", "XLMRoberta")):
        positions -= int(config.get("pad_token_id", 1)) + 1  # RoBERTa positions start after padding_idx
    limit = opts.max_seq_len or st.max_seq_length or positions
    if limit > positions:
        raise ExportError(
            f"max sequence length {limit} exceeds the model's {positions} positions ({model_dir}); "
            f"use --max-seq-len {positions} or less"
        )
    return int(limit)


def _head(st: SentenceTransformerConfig, entry: ZooEntry) -> str | None:
    """The output head: the zoo recipe's, or SPLADE for an MLM checkpoint with a SpladePooling module."""
    head = entry.recipe.get("head")
    if head is None and st.splade is not None:
        if "mlm_loader" not in entry.recipe:
            raise ExportError(
                f"{st.transformer_dir}: a SpladePooling module needs a masked-LM checkpoint; {entry.architecture} "
                "has no MLM head in the zoo (BertForMaskedLM, DistilBertForMaskedLM do)"
            )
        head = "splade"
    if head is None and st.multi_vector is not None:
        head = "multi_vector"
    return None if head is None else str(head)


def _build_graph(
    st: SentenceTransformerConfig,
    entry: ZooEntry,
    pooling: Pooling,
    opts: ExportOptions,
    head: str | None = None,
    special: dict[str, int] | None = None,
    head_config: dict[str, Any] | None = None,
) -> EmbeddingGraph:
    if head == "multi_vector":
        expansion = (head_config or {}).get("expansion") or {}
        vectors: Any = MultiVectorGraph(
            build_encoder(st.transformer_dir, entry, opts.trust_remote_code),
            [dense_from_st(layer) for layer in st.dense],
            uses_token_type_ids=entry.token_type_ids,
            expansion_id=None if not expansion or expansion["attend"] else int(expansion["token_id"]),
        ).eval()
        return vectors
    if head is not None:
        graph: Any = head_graph(head, st.transformer_dir, entry.recipe, st.splade, special or {})
        return graph  # same interface: encoder, input_names, output_names; sentence_embedding first
    encoder = build_encoder(st.transformer_dir, entry, opts.trust_remote_code)
    dense = [dense_from_st(layer) for layer in st.dense]
    return EmbeddingGraph(
        encoder,
        pooling.mode,
        dense,
        uses_token_type_ids=entry.token_type_ids,
        separate_pooling_mask=not pooling.include_prompt,
    ).eval()

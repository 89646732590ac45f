"""`export_model`: HF model directory -> artifact (manifest, tokenizer, ONNX graphs)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_embed.engines.base import Batch
from trt_embed.engines.onnxruntime import OnnxRuntimeEngine
from trt_embed.errors import ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.calibration import check_texts, default_calibration_texts
from trt_embed.exporter.checks import add_packed_graphs, checked_onnx_entry, ensure_fp16_graph
from trt_embed.exporter.colbert import colbert_config, mark_special
from trt_embed.exporter.families import WeightVariants, build_encoder
from trt_embed.exporter.graph import EmbeddingGraph, dense_from_st
from trt_embed.exporter.heads import MultiVectorGraph, head_graph, multi_vector_config, special_token_ids
from trt_embed.exporter.int8 import INT8_MIN_COSINE, INT8_MIN_MEAN_COSINE, calibration_passages, static_int8_entry
from trt_embed.exporter.models.recipe import apply_recipe, ensure_eos, entry_for, recipe_matryoshka
from trt_embed.exporter.plans import PlanOptions, add_plans
from trt_embed.exporter.source import (
    SentenceTransformerConfig,
    check_model_dir,
    read_sentence_transformers,
    resolve_model_dir,
    source_record,
)
from trt_embed.exporter.sparse_query import save_query_table
from trt_embed.exporter.tokenizer import tokenizer_hashes, tokenizer_to_artifact
from trt_embed.exporter.variants import calibration_ranges, check_adapter, merged_lora_graph
from trt_embed.manifest import EngineEntry, Manifest, Pooling, TensorSpec, TokenizerInfo
from trt_embed.poolers import POOLING_MODES
from trt_embed.runtime.batch import pad
from trt_embed.runtime.tokenizer import TextTokenizer
from trt_embed.zoo import ZooEntry, architecture_of, load_zoo, zoo_entry

log = logging.getLogger("trt_embed.export")

PRECISIONS = ("auto", "fp32", "fp16", "int8")
ENGINES = ("onnx", "tensorrt", "all")
EXACT_MIN_COSINE = 0.99999


@dataclasses.dataclass
class ExportOptions:
    max_seq_len: int | None = None
    pooling: str | None = None
    normalize: bool | None = None
    precision: str = "auto"  # comma list; auto: fp32, plus fp16 and int8 when they are accurate enough
    engine: str = "onnx"  # onnx: ONNX graphs; tensorrt: the graphs plans need + plans; all: both
    plans: PlanOptions | None = None  # TensorRT build options; None: the defaults
    trust_remote_code: bool = False
    revision: str | None = None
    fuse: bool = True
    calibration_texts: list[str] | None = None
    matryoshka_dims: list[int] | None = None  # record Matryoshka support the config does not state ([] = any)
    lora: dict[str, str] = dataclasses.field(default_factory=dict)  # variant name -> PEFT adapter directory
    convert: str | None = None  # "embed": export a *ForCausalLM / *Model that is not in the zoo
    architecture: str | None = None  # instead of config.json's (GritLM-7B says MistralForCausalLM; like vLLM's
    # `--hf-overrides '{"architectures": [...]}'`)


def tool_versions() -> dict[str, str]:
    versions = {}
    for name in ("trt-embed", "torch", "transformers", "onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def export_model(model: str, output: str | Path, options: ExportOptions | None = None) -> Manifest:
    """Export `model` (a directory or a cached hub id) into the artifact directory `output`."""
    opts = options or ExportOptions()
    precisions(opts.precision)
    if opts.engine not in ENGINES:
        raise ExportError(f"engine must be one of {', '.join(ENGINES)}, got {opts.engine!r}")
    if opts.pooling is not None and opts.pooling not in POOLING_MODES:
        raise ExportError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {opts.pooling!r}")
    for name, adapter_dir in opts.lora.items():
        check_adapter(name, Path(adapter_dir))
    model_dir = resolve_model_dir(model, opts.revision)
    log.info("reading %s", model_dir)
    st = read_sentence_transformers(model_dir)
    config = check_model_dir(st.transformer_dir)
    architectures = [opts.architecture] if opts.architecture else config.get("architectures") or []
    if not architectures:
        raise ExportError(
            f"{st.transformer_dir}/config.json names no `architectures`; cannot pick an exporter. "
            "Name one with --architecture."
        )
    routed = architecture_of(config, [p.name for p in st.transformer_dir.iterdir()])
    use_routing = routed in load_zoo() and not opts.architecture
    entry = zoo_entry(routed) if use_routing else entry_for(architectures[0], opts.convert)
    config = {**{key: config[alias] for key, alias in entry.config_aliases.items() if alias in config}, **config}

    final = Path(output).expanduser().resolve()
    _check_output(final)
    out = final.with_name(f".{final.name}.partial")  # built aside, moved into place when complete
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        if entry.family == "two_tower":  # CLIP / SigLIP: a text graph and an image graph
            from trt_embed.exporter.two_tower import export_two_tower

            manifest = export_two_tower(out, model, model_dir, st, config, entry, opts)
            if opts.engine != "onnx":  # plans for both towers, from the graphs the export kept
                have = {e.precision for e in manifest.engines}
                plans = opts.plans or PlanOptions()
                add_plans(
                    out,
                    manifest,
                    dataclasses.replace(plans, precisions=tuple(p for p in plans.precisions if p in have)),
                )
            manifest.write(out)
        elif entry.family == "vlm":  # vision-language embedders: a vision graph and a decoder graph
            from trt_embed.exporter.vlm import export_vlm

            manifest = export_vlm(out, model, st.transformer_dir, config, entry, opts)
        else:
            manifest = _export_into(out, model, model_dir, st, config, entry, opts)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    log.info("exported %s -> %s (%d engines)", model, final, len(manifest.engines))
    return manifest


def _export_into(
    out: Path,
    model: str,
    model_dir: Path,
    st: SentenceTransformerConfig,
    config: dict[str, Any],
    entry: ZooEntry,
    opts: ExportOptions,
) -> Manifest:
    st = apply_recipe(st, entry)
    colbert = entry.recipe.get("checkpoint") == "colbert"  # Stanford ColBERT: HF_ColBERT + artifact.metadata
    if colbert:
        st = colbert_config(st, st.transformer_dir, int(config["hidden_size"]))
    max_len = _max_seq_length(config, st, opts, entry, model_dir)
    tokenizer_info = tokenizer_to_artifact(
        st.transformer_dir, out, model_config=config, padding_side=entry.padding_side, do_lower_case=st.do_lower_case
    )
    ensure_eos(out / "tokenizer", st.transformer_dir, entry, config)
    if colbert:
        mark_special(out / "tokenizer", st.transformer_dir)
    tokenizer = TextTokenizer(out / "tokenizer", tokenizer_info, max_len)
    pooling = Pooling(mode=opts.pooling or st.pooling or entry.default_pooling, include_prompt=st.include_prompt)

    log.info("loading the %s weights into PyTorch", entry.architecture)
    head = _head(st, entry)
    special = special_token_ids(out / "tokenizer")
    head_config = multi_vector_config(st.multi_vector, special, out / "tokenizer") if st.multi_vector else {}
    graph = _build_graph(st, entry, pooling, opts, head, special, head_config)
    calibration = opts.calibration_texts or default_calibration_texts()
    with torch.no_grad():  # the calibration embeddings (int8 output ranges), before weights may be released
        pooled = graph(*_example(graph, tokenizer, tokenizer_info, calibration))[0].numpy()
    variants = isinstance(graph.encoder, WeightVariants)
    engines = _export_engines(
        graph, out, tokenizer, tokenizer_info, entry, config, calibration, opts, release=not variants
    )
    matryoshka = _matryoshka(config, opts, entry, int(pooled.shape[-1]))
    instructions = {str(k): str(v) for k, v in (config.get("task_instructions") or {}).items()}  # jina-v3
    prompts = {**entry.prompts, **instructions, **st.prompts}
    query_files: dict[str, str] = {}
    if st.sparse_query is not None:  # inference-free SPLADE: queries by a weight table, documents by the graph
        query_config, query_files = save_query_table(st.sparse_query, out, int(config["vocab_size"]))
        head_config = {**head_config, **query_config}
        prompts = {"query": "", "document": "", **prompts}  # the routes are chosen by these prompt names
    adapters: dict[str, dict[str, Any]] = {}
    if variants:  # adapters stored in the checkpoint, e.g. jina-v3's tasks
        for name in graph.encoder.variant_names():
            graph.encoder.use_variant(name)
            engines += _export_engines(graph, out, tokenizer, tokenizer_info, entry, config, calibration, opts, name)
            adapters[name] = {**graph.encoder.variant_record(name), "prompt_name": name if name in prompts else None}
        graph.encoder.use_variant(None)
    for name, adapter_dir in opts.lora.items():
        if name in adapters:
            raise ExportError(f"--lora {name}=...: the checkpoint already has a variant {name!r}; choose another name")
        variant_graph, adapters[name] = merged_lora_graph(
            lambda: _build_graph(st, entry, pooling, opts, head, special, head_config), Path(adapter_dir), name
        )
        engines += _export_engines(
            variant_graph, out, tokenizer, tokenizer_info, entry, config, calibration, opts, variant=name
        )
    manifest = Manifest(
        architecture=entry.architecture,
        family=entry.family,
        kind=head or "dense",
        special_token_ids=sorted({special[r] for r in ("cls", "sep", "bos", "eos", "pad", "unk") if r in special})
        if head == "bge_m3"
        else [],
        head_config=head_config,
        hidden_size=int(config["hidden_size"]),
        embedding_dim=int(pooled.shape[-1]),
        pooling=pooling,
        max_seq_length=max_len,
        tokenizer=tokenizer_info,
        source=source_record(model, model_dir, opts.revision, st.transformer_dir),
        normalize=bool(opts.normalize) if head == "splade" else _normalize(st, opts),  # SPLADE weights are raw
        matryoshka_dimensions=matryoshka,
        matryoshka_transform=entry.matryoshka_transform,
        prompts=prompts,
        default_prompt_name=st.default_prompt_name,
        uses_token_type_ids=entry.token_type_ids,
        vocab_size=int(config["vocab_size"]) if config.get("vocab_size") else None,
        dense_layers=len(st.dense),
        lora_adapters=adapters,
        calibration=calibration_ranges(pooled, matryoshka),
        engines=engines,
        files={**tokenizer_hashes(out, tokenizer_info), **query_files},
    )
    _more_engines(out, manifest, calibration, opts)
    manifest.write(out)
    return manifest


def precisions(spec: str) -> dict[str, bool]:
    """Requested precisions -> whether each is required (True) or kept only if accurate (False)."""
    names = [p.strip() for p in spec.split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names:
        raise ExportError(f"precision must be one or more of {', '.join(PRECISIONS)} (comma-separated), got {spec!r}")
    if "auto" in names:
        return {"fp32": True, "fp16": False, "int8": False}
    return {"fp32": True, **{p: True for p in names}}


def _more_engines(out: Path, manifest: Manifest, calibration: list[str], opts: ExportOptions) -> None:
    """The fp16 graph and TensorRT plans, after the fp32/int8 ONNX graphs exist."""
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
    if opts.engine == "onnx":
        return
    plans = opts.plans or PlanOptions()
    have = {e.precision for e in manifest.engines if e.kind == "onnx"}
    chosen = tuple(p for p in plans.precisions if p in wanted and p in have)
    log.info("building TensorRT plans: %s", ", ".join(chosen) or "none")
    add_plans(out, manifest, dataclasses.replace(plans, precisions=chosen))


def _check_output(out: Path) -> None:
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "trt_embed.json").is_file()):
        raise ExportError(
            f"{out} exists and is not a trt-embed artifact; choose an empty or new directory "
            "(an existing artifact there is replaced)"
        )


def _normalize(st: SentenceTransformerConfig, opts: ExportOptions) -> bool:
    if opts.normalize is not None:
        return opts.normalize
    return True if st.normalize is None else st.normalize


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


def _example(
    graph: EmbeddingGraph, tokenizer: TextTokenizer, info: TokenizerInfo, texts: list[str]
) -> tuple[torch.Tensor, ...]:
    tokenized = tokenizer.encode(texts)
    arrays = pad(tokenized.ids, tokenized.type_ids, pad_id=info.pad_token_id, side=info.padding_side)
    arrays["pooling_mask"] = arrays["attention_mask"]
    return tuple(torch.from_numpy(arrays[name]) for name in graph.input_names)


def _output_spec(name: str, value: np.ndarray) -> TensorSpec:
    """Pooled outputs are [batch, D]; token outputs [batch, sequence] or [batch, sequence, D]."""
    if name == "sentence_embedding":
        return TensorSpec(name, "float32", ["batch", int(value.shape[-1])])
    return TensorSpec(name, "float32", ["batch", "sequence", *([int(value.shape[-1])] if value.ndim == 3 else [])])


def _check_other_outputs(path: Path, entry: EngineEntry, feeds: Batch, computed: dict[str, np.ndarray]) -> None:
    """Every output besides `sentence_embedding` (checked by `measured`) against PyTorch, row by row."""
    names = [name for name in computed if name != "sentence_embedding"]
    engine = OnnxRuntimeEngine(path, entry, threads=2)
    got = engine.infer(feeds, names)
    engine.close()
    mask = feeds.arrays["attention_mask"].astype(bool)
    for name in names:
        want, have = computed[name][mask], got[name][mask]  # real tokens only
        want, have = want.reshape(len(want), -1), have.reshape(len(have), -1)
        if not np.allclose(have, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max()))):
            raise ExportError(
                f"the exported ONNX graph's {name} does not match PyTorch (max difference "
                f"{float(np.abs(have - want).max()):.3g}); this is a bug in the exporter, please report it"
            )


def _export_engines(
    graph: EmbeddingGraph,
    out: Path,
    tokenizer: TextTokenizer,
    info: TokenizerInfo,
    entry: ZooEntry,
    config: dict[str, Any],
    calibration: list[str],
    opts: ExportOptions,
    variant: str = "base",
    release: bool = False,
) -> list[EngineEntry]:
    """Export, check and (optionally) fuse and quantize one graph; files of LoRA variants go to
    `variants/NAME/`. `release` frees the graph's torch weights once the fp32 ONNX graph is checked."""
    prefix = "" if variant == "base" else f"variants/{variant}/"
    (out / prefix).mkdir(parents=True, exist_ok=True)
    # Trace on two inputs of different lengths (padding present), check on other shapes.
    by_length = sorted(calibration, key=len)
    example = _example(graph, tokenizer, info, [by_length[0], by_length[-1]])
    check_inputs = _example(graph, tokenizer, info, check_texts(calibration))
    with torch.no_grad():
        computed = [t.numpy() for t in graph(*check_inputs)]
    reference = computed[0]
    feeds = Batch.padded({name: t.numpy() for name, t in zip(graph.input_names, check_inputs, strict=True)})
    inputs = [TensorSpec(name, "int64", ["batch", "sequence"]) for name in graph.input_names]
    outputs = [_output_spec(name, value) for name, value in zip(graph.output_names, computed, strict=True)]

    def measured(file: str, precision: str, optimized: bool) -> tuple[EngineEntry, np.ndarray]:
        return checked_onnx_entry(
            out,
            file,
            feeds,
            reference,
            precision=precision,
            inputs=inputs,
            outputs=outputs,
            tools=tool_versions(),
            optimized=optimized,
            variant=variant,
        )

    named = "" if variant == "base" else f" (variant {variant})"
    log.info("exporting the fp32 ONNX graph%s", named)
    onnx_graph.onnx_from_graph(graph, example, out / f"{prefix}model.onnx")
    log.info("checking it against PyTorch on %d texts", len(calibration))
    base, cos = measured(f"{prefix}model.onnx", "fp32", False)
    if cos.min() < EXACT_MIN_COSINE:
        raise ExportError(
            f"the exported ONNX graph does not match PyTorch (min cosine {cos.min():.6f}); this is a bug in the "
            f"{entry.architecture} exporter, please report it"
        )
    _check_other_outputs(out / base.file, base, feeds, dict(zip(graph.output_names, computed, strict=True)))
    engines = [base]
    if release:
        graph.to("meta")  # the torch weights are done with: free them before the ONNX passes (export memory)
    source = out / f"{prefix}model.onnx"
    wanted = precisions(opts.precision)
    if opts.fuse and entry.ort_fusion and opts.engine != "tensorrt":
        log.info("fusing the graph (onnxruntime transformer fusions)%s", named)
        onnx_graph.fused_from_onnx(
            source,
            out / f"{prefix}model.optimized.onnx",
            model_type=entry.ort_fusion,
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
        )
        fused, cos = measured(f"{prefix}model.optimized.onnx", "fp32", True)
        if cos.min() >= EXACT_MIN_COSINE:
            _check_other_outputs(out / fused.file, fused, feeds, dict(zip(graph.output_names, computed, strict=True)))
            engines.append(fused)
            source = out / f"{prefix}model.optimized.onnx"
        else:
            log.warning("fused graph is inaccurate (min cosine %.6f); not shipping it", cos.min())
            (out / f"{prefix}model.optimized.onnx").unlink()
    if "int8" in wanted and opts.engine != "tensorrt":
        log.info("quantizing to int8 (dynamic, per channel)%s", named)
        onnx_graph.int8_from_onnx(source, out / f"{prefix}model.int8.onnx")
        int8, cos = measured(f"{prefix}model.int8.onnx", "int8", source.name == "model.optimized.onnx")
        if cos.mean() >= INT8_MIN_MEAN_COSINE and cos.min() >= INT8_MIN_COSINE:
            engines.append(int8)
        else:
            (out / f"{prefix}model.int8.onnx").unlink()
            message = (
                f"int8 quantization is not accurate enough for this model (cosine vs fp32: mean "
                f"{cos.mean():.4f}, min {cos.min():.4f}; needs >= {INT8_MIN_MEAN_COSINE} / {INT8_MIN_COSINE})"
            )
            if wanted["int8"]:
                raise ExportError(message + "; export with --precision fp32")
            log.warning("%s; the artifact has fp32 graphs only", message)
    if "int8" in wanted and opts.engine != "tensorrt" and any(e.precision == "int8" for e in engines):
        one_by_one = [
            {n: t.numpy() for n, t in zip(graph.input_names, _example(graph, tokenizer, info, [text]), strict=True)}
            for text in calibration_passages(calibration)
        ]
        static = static_int8_entry(out, prefix, one_by_one, measured)
        if static is not None:
            engines.append(static)
    return engines

"""The cross-encoder exporter: any transformers `*ForSequenceClassification` checkpoint (sentence-transformers
CrossEncoder rerankers, NLI and sentiment classifiers) -> one `logits` [B, num_labels] graph with the head inside,
traced through the project's ONNX path on padded pairs of two widths and checked against PyTorch on pairs of more
widths (|diff| gate, fp32). The manifest's kind is "cross_encoder"; its head_config holds what the runtime needs:
num_labels, id2label, the CrossEncoder activation (`activation`), the /classify activation (`classify_activation`,
from problem_type) and the pair truncation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_embed.engines.base import Batch
from trt_embed.engines.onnxruntime import OnnxRuntimeEngine
from trt_embed.errors import ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.external_data import data_hashes
from trt_embed.exporter.interface import ExportJob, Supports
from trt_embed.exporter.options import tool_versions
from trt_embed.exporter.rerankers import ClassifierGraph
from trt_embed.exporter.source import source_record
from trt_embed.exporter.tokenizer import tokenizer_hashes, tokenizer_to_artifact
from trt_embed.manifest import EngineEntry, Manifest, Pooling, TensorSpec, sha256_file
from trt_embed.runtime.outputs.pair_scores import classifier_activation, default_activation
from trt_embed.runtime.text.pairs import PairTokenizer
from trt_embed.zoo import ZooEntry

log = logging.getLogger("trt_embed.export")
FAMILY = "cross_encoder"
MAX_ABS_DIFF = 1e-4  # fp32 graph vs PyTorch logits, relative to max(1, |logit|)
# traced on the first two (different widths), checked on all
CHECK_PAIRS = [
    ("what is a panda?", "The giant panda is a bear species endemic to China."),
    (
        "how tall is the eiffel tower",
        "The Eiffel Tower in Paris is 330 metres tall, about the height of an "
        "81-storey building, and was the tallest man-made structure in the world for 41 years.",
    ),
    ("rust ownership", "Each value in Rust has an owner; there can only be one owner at a time."),
    ("a", "b"),
    ("¿dónde está la biblioteca?", "La biblioteca está en el centro de la ciudad, junto a la plaza mayor."),
]


def cross_encoder_entry(architecture: str) -> ZooEntry:
    """The zoo entry of any `*ForSequenceClassification` architecture (loaded with its own head)."""
    return ZooEntry(
        architecture=architecture,
        family=FAMILY,
        loader="AutoModelForSequenceClassification",
        default_pooling="cls",
        token_type_ids=True,
        ort_fusion=None,
        padding_side="right",
        tiny={},
    )


class CrossEncoderExporter:
    label = "cross-encoders and sequence classifiers"
    supports = Supports(precisions=("fp32",), plans=False, lora=False, pooling=False, matryoshka=False)

    def export(self, job: ExportJob) -> Manifest:
        from transformers import AutoModelForSequenceClassification

        model_dir = job.st.transformer_dir
        max_len = _max_length(job)
        info = tokenizer_to_artifact(
            model_dir, job.out, model_config=job.config, padding_side="right", do_lower_case=False
        )
        tokenizer = PairTokenizer.from_file(job.out / "tokenizer" / "tokenizer.json", max_len)
        log.info("loading the %s weights into PyTorch", job.entry.architecture)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
        uses_types = _uses_token_types(model)
        engine = _checked_graph(ClassifierGraph(model).eval(), tokenizer, job.out, uses_types)
        num_labels = int(model.config.num_labels)
        return Manifest(
            architecture=job.entry.architecture,
            family=FAMILY,
            kind=FAMILY,
            head_config=_head_config(job.config, num_labels),
            hidden_size=int(job.config.get("hidden_size") or 0),
            embedding_dim=num_labels,
            pooling=Pooling(mode="cls"),
            max_seq_length=max_len,
            tokenizer=info,
            source=source_record(job.model, job.model_dir, job.opts.revision, model_dir),
            normalize=False,
            uses_token_type_ids=uses_types,
            vocab_size=int(job.config["vocab_size"]) if job.config.get("vocab_size") else None,
            engines=[engine],
            files=tokenizer_hashes(job.out, info),
        )


CROSS_ENCODER = CrossEncoderExporter()


def _head_config(config: dict[str, Any], num_labels: int) -> dict[str, Any]:
    """Labels and activations: the CrossEncoder's configured activation (sentence-transformers v4+ or older
    names), else Sigmoid for one label and Identity for several; /classify's from problem_type."""
    st = config.get("sentence_transformers") or {}
    configured = st.get("activation_fn") or config.get("sbert_ce_default_activation_function")
    id2label = {str(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    return {
        "num_labels": num_labels,
        "id2label": {str(i): id2label.get(str(i), f"LABEL_{i}") for i in range(num_labels)},
        "activation": default_activation(num_labels, configured),
        "classify_activation": classifier_activation(num_labels, config.get("problem_type")),
        "truncation": "longest_first",
    }


def _max_length(job: ExportJob) -> int:
    """The pair limit: --max-seq-len, else the tokenizer's model_max_length, within the model's positions."""
    import json

    positions = int(job.config.get("max_position_embeddings", 512))
    if job.config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= int(job.config.get("pad_token_id", 1)) + 1  # positions start after padding_idx
    tok_config_path = job.st.transformer_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text()) if tok_config_path.is_file() else {}
    from_tokenizer = int(tok_config.get("model_max_length") or positions)
    limit = job.opts.max_seq_len or min(from_tokenizer, positions)
    if limit > positions:
        raise ExportError(f"max sequence length {limit} exceeds the model's {positions} positions; use --max-seq-len")
    return int(limit)


def _uses_token_types(model: torch.nn.Module) -> bool:
    """Whether the model has token type embeddings worth feeding (BERT yes; RoBERTa's one type: no harm either)."""
    config = model.config
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1


def _feeds(tokenizer: PairTokenizer, pairs: list[tuple[str, str]], names: list[str]) -> dict[str, np.ndarray]:
    arrays = tokenizer.encode_pairs(pairs)
    return {name: arrays[name].astype(np.int64) for name in names}


def _checked_graph(graph: ClassifierGraph, tokenizer: PairTokenizer, out: Path, uses_types: bool) -> EngineEntry:
    """Trace the graph (two pairs of different widths: padding present), then check every CHECK_PAIRS logit."""
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if uses_types else [])]
    example = _feeds(tokenizer, CHECK_PAIRS[:2], names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    log.info("exporting the fp32 ONNX graph")
    tensors = tuple(torch.from_numpy(example[n]) for n in names)
    onnx_graph.onnx_from_module(graph, tensors, out / "model.onnx", names, ["logits"], axes)
    with torch.no_grad():
        want = graph(*(torch.from_numpy(a) for a in _feeds(tokenizer, CHECK_PAIRS, names).values())).numpy()
    entry = EngineEntry(
        file="model.onnx",
        kind="onnx",
        precision="fp32",
        target="any",
        inputs=[TensorSpec(n, "int64", ["batch", "sequence"]) for n in names],
        outputs=[TensorSpec("logits", "float32", ["batch", int(want.shape[-1])])],
        tools=tool_versions(),
        sha256=sha256_file(out / "model.onnx"),
        extra=data_hashes(out / "model.onnx"),
    )
    engine = OnnxRuntimeEngine(out / "model.onnx", entry, threads=2)
    try:  # one pair at a time and all together: the padded widths differ
        got = engine.infer(Batch.padded(_feeds(tokenizer, CHECK_PAIRS, names)), ["logits"])["logits"]
        alone = np.concatenate(
            [engine.infer(Batch.padded(_feeds(tokenizer, [p], names)), ["logits"])["logits"] for p in CHECK_PAIRS]
        )
    finally:
        engine.close()
    diff = float(max(np.abs(got - want).max(), np.abs(alone - want).max()))
    if diff > MAX_ABS_DIFF * max(1.0, float(np.abs(want).max())):
        raise ExportError(
            f"the exported ONNX graph's logits do not match PyTorch (max difference {diff:.3g}); this is a bug in "
            "the cross-encoder exporter, please report it"
        )
    entry.quality = {"max_abs_diff": diff}
    return entry

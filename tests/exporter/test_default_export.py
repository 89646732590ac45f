"""The export a new user runs: DEFAULT options (precision auto, fusion on) on a tiny model of every zoo family and
head, then every precision the manifest lists, opened through `Runtime.load` as a user opens it, against the
artifact's own fp32 graph on short queries and long passages alike. A precision that the export kept must hold
the gate the exporter checked it with (fp16 and int8 are kept only when close enough to fp32); the fp32 graph
itself is checked against PyTorch by test_zoo_parity.py, test_golden.py, test_heads.py and the others."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest
from trt_embed.exporter.checks import FP16_MIN_COSINE
from trt_embed.exporter.int8 import INT8_MIN_COSINE, INT8_MIN_MEAN_COSINE
from trt_embed.runtime import EmbedRequest, Runtime
from trt_embed.runtime.types import Dense, Sparse, TokenVectors
from trt_embed.zoo import load_zoo

pytest.importorskip("torch")

# Every zoo entry, plus the heads a checkpoint's files (not its architecture) choose.
INFERENCE_FREE = "inference-free SPLADE"
# Static int8 of these tiny decoders passes the export's gate but not what a user measures: on GritLM, the same
# static graph gives min cosine 0.92-0.96 on inputs that carry the model's default prompt (which the runtime adds)
# and 0.997 on the exporter's check inputs, in a fresh process too. Open: calibrate and gate with the prompt.
INT8_PROMPT_GAP = {"GritLM", "LlamaBidirectionalModel", "Qwen2ForCausalLM", "VoyageQwen3BidirectionalEmbedModel"}
# CI exports one model of each export path (about a minute each on 2 cores); TRT_EMBED_EXPORT_SWEEP=all exports
# every zoo entry (38, about 15 minutes): run it when an exporter, a precision pass or a pinned version changes.
EACH_PATH = [
    "BertModel",  # encoder, fused graph, int8 (dynamic and static)
    "BertForMaskedLM",  # SPLADE head through the fused fp16 graph
    "BgeM3EmbeddingModel",  # dense + sparse + multi-vector outputs
    "HF_ColBERT",  # Stanford ColBERT checkpoint
    INFERENCE_FREE,  # query table + document graph
    "XLMRobertaLoRA",  # jina-v3: a graph per task variant
    "Qwen3ForCausalLM",  # decoder, last-token pooling, left padding
    "CLIPModel",  # two towers
    "Qwen2VLForConditionalGeneration",  # vision-language: vision graph + decoder graph
]
SWEEP = [*sorted(load_zoo()), INFERENCE_FREE] if os.environ.get("TRT_EMBED_EXPORT_SWEEP") == "all" else EACH_PATH
MODELS = [
    pytest.param(name, marks=pytest.mark.xfail(strict=False, reason="static int8 gate without the default prompt"))
    if name in INT8_PROMPT_GAP
    else name
    for name in SWEEP
]
# Every length class a model sees: one-word and few-word queries, sentences, passages of a hundred words and more.
TEXTS = [
    "hello",
    "blue water",
    "how fast is a large dog",
    "the cat read a paper in the city at night and the river was green",
    " ".join(["what time is it in the world of music and light, said the small model to the large one"] * 6),
]
GATES = {"fp16": (FP16_MIN_COSINE, FP16_MIN_COSINE), "int8": (INT8_MIN_MEAN_COSINE, INT8_MIN_COSINE)}


def inference_free_model(source: Path, folder: Path) -> Path:
    """opensearch's inference-free layout, saved by sentence-transformers (see test_inference_free_splade.py)."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    weight = torch.rand(len(tokenizer.get_vocab()), generator=torch.Generator().manual_seed(5)) * 3
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=tokenizer, weight=weight, frozen=True)],
        document_modules=[MLMTransformer(str(source)), SpladePooling("max", activation_function="log1p_relu")],
    )
    SparseEncoder(modules=[router], similarity_fn_name="dot").save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def default_export(
    tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[Path, list[str]]]:
    """name -> (artifact exported with default options, the warnings the export logged)."""
    from trt_embed.exporter import export_model

    made: dict[str, tuple[Path, list[str]]] = {}

    def make(name: str) -> tuple[Path, list[str]]:
        if name not in made:
            folder = tmp_path_factory.mktemp("default-export")
            if name == INFERENCE_FREE:
                pytest.importorskip("sentence_transformers")
                source = inference_free_model(tiny_model("BertForMaskedLM"), folder / "model")
            else:
                source = tiny_model(name)
            handler = Collect()
            logging.getLogger("trt_embed").addHandler(handler)
            try:
                export_model(str(source), folder / "artifact")
            finally:
                logging.getLogger("trt_embed").removeHandler(handler)
            made[name] = (folder / "artifact", handler.warnings)
        return made[name]

    return make


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings.append(record.getMessage())


def flat_outputs(runtime: Runtime, task: str, variant: str | None, images: list[Any]) -> list[np.ndarray]:
    """One 1-D vector per input of `task`: pooled vectors, token vectors end to end, sparse weights by token id."""
    inputs: list[Any] = [*TEXTS, *images]
    request = EmbedRequest(inputs=inputs, task=task, variant=variant, normalize=False)  # type: ignore[arg-type]
    output = runtime.run(request).output
    if isinstance(output, Dense):
        return list(output.vectors)
    if isinstance(output, TokenVectors):
        return [v.reshape(-1) for v in output.vectors]
    assert isinstance(output, Sparse)
    size = int(runtime.manifest.vocab_size or 0)
    rows = []
    for ids, weights in zip(output.ids, output.weights, strict=True):
        row = np.zeros(size, dtype=np.float32)
        row[ids] = weights
        rows.append(row)
    return rows


def cosines(got: list[np.ndarray], want: list[np.ndarray]) -> np.ndarray:
    assert [g.shape for g in got] == [w.shape for w in want]
    return np.array(
        [
            float(g @ w) / max(float(np.linalg.norm(g) * np.linalg.norm(w)), 1e-30) if np.any(w) else float(not g.any())
            for g, w in zip(got, want, strict=True)
        ]
    )


def pictures(manifest: dict[str, Any]) -> list[Any]:
    if not any(e.get("modality") == "image" for e in manifest["engines"]) and manifest["family"] != "vlm":
        return []
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_default_export_every_precision(name: str, default_export: Callable[[str], tuple[Path, list[str]]]) -> None:
    artifact, warnings = default_export(name)
    manifest = json.loads((artifact / "trt_embed.json").read_text())
    graphs = [e for e in manifest["engines"] if e["kind"] == "onnx" and e["target"] == "any"]
    listed = sorted({e["precision"] for e in graphs})
    assert "fp32" in listed
    variants = sorted({e["variant"] for e in graphs})
    for variant in variants:  # a precision the export kept exists for every variant
        have = sorted({e["precision"] for e in graphs if e["variant"] == variant})
        assert have == listed, f"variant {variant} has {have}, the artifact {listed}"
    images = pictures(manifest)
    reference: dict[tuple[str, str], list[np.ndarray]] = {}
    with Runtime.load(artifact, precision="fp32") as runtime:
        for task in [t for t in runtime.tasks if t != "token_classify"]:
            for variant in variants:
                try:
                    got = flat_outputs(runtime, task, None if variant == "base" else variant, images)
                except InvalidRequest:  # a task the artifact's graphs do not output (two-tower: token_embed)
                    continue
                reference[(task, variant)] = got
    assert reference
    for precision in [p for p in listed if p != "fp32"]:
        with Runtime.load(artifact, precision=precision) as runtime:
            for (task, variant), want in reference.items():
                got = flat_outputs(runtime, task, None if variant == "base" else variant, images)
                cos = cosines(got, want)
                mean_gate, min_gate = GATES[precision]
                where = f"{name} {precision} on {runtime.backend}, {task}, variant {variant}: cosines {cos.round(4)}"
                assert cos.mean() >= mean_gate and cos.min() >= min_gate, where
    assert not [w for w in warnings if "fail" in w.lower()], warnings

"""The cross-encoder exporter with default options on tiny random-weight sequence classifiers (BERT with 1 and 3
labels, XLM-RoBERTa): the artifact's graph, fed by the runtime's pair tokenizer, vs sentence-transformers'
CrossEncoder.predict (|diff| <= 1e-5, same ranking); options that do not apply are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.runtime.test_pairs import MINILM, PAIRS
from trt_embed.engines.base import Batch
from trt_embed.engines.onnxruntime import OnnxRuntimeEngine
from trt_embed.errors import ExportError
from trt_embed.exporter.export import export_model
from trt_embed.exporter.options import ExportOptions
from trt_embed.manifest import Manifest
from trt_embed.runtime.outputs.pair_scores import scores
from trt_embed.runtime.text.pairs import PairTokenizer

COMMON = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _save(kind: str, num_labels: int, directory: Path) -> Path:
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    torch.manual_seed(num_labels)
    labels = {"id2label": {i: f"class_{i}" for i in range(num_labels)}} if num_labels > 1 else {}
    if kind == "bert":
        model: Any = BertForSequenceClassification(BertConfig(num_labels=num_labels, **labels, **COMMON))
    else:
        config = XLMRobertaConfig(num_labels=num_labels, max_position_embeddings=514, **labels, **COMMON)
        model = XLMRobertaForSequenceClassification(config)
    model.eval().save_pretrained(directory)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], tuple[Path, Path]]:
    made: dict[tuple[str, int], tuple[Path, Path]] = {}

    def make(kind: str, num_labels: int) -> tuple[Path, Path]:
        if (kind, num_labels) not in made:
            root = tmp_path_factory.mktemp(f"{kind}{num_labels}")
            model = _save(kind, num_labels, root / "model")
            export_model(str(model), root / "artifact")
            made[kind, num_labels] = model, root / "artifact"
        return made[kind, num_labels]

    return make


def _artifact_scores(artifact: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    manifest = Manifest.read(artifact)
    entry = manifest.engines[0]
    tokenizer = PairTokenizer.from_file(artifact / "tokenizer" / "tokenizer.json", manifest.max_seq_length)
    arrays = tokenizer.encode_pairs(pairs)
    engine = OnnxRuntimeEngine(artifact / entry.file, entry, threads=1)
    try:
        feeds = {spec.name: arrays[spec.name] for spec in entry.inputs}
        logits = engine.infer(Batch.padded(feeds), ["logits"])["logits"]
    finally:
        engine.close()
    return scores(logits, manifest.head_config["activation"])


@pytest.mark.parametrize(("kind", "num_labels"), [("bert", 1), ("bert", 3), ("xlm_roberta", 1)])
def test_exported_scores_equal_cross_encoder_predict(
    exported: Callable[[str, int], tuple[Path, Path]], kind: str, num_labels: int
) -> None:
    from sentence_transformers import CrossEncoder

    model, artifact = exported(kind, num_labels)
    manifest = Manifest.read(artifact)
    assert manifest.kind == "cross_encoder"
    assert manifest.head_config["num_labels"] == num_labels
    if num_labels > 1:
        assert manifest.head_config["id2label"] == {str(i): f"class_{i}" for i in range(num_labels)}
    got = _artifact_scores(artifact, PAIRS)
    expected = CrossEncoder(str(model), device="cpu").predict(PAIRS, convert_to_numpy=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    if num_labels == 1:
        assert list(np.argsort(-got)) == list(np.argsort(-expected))
    else:
        assert list(got.argmax(axis=1)) == list(expected.argmax(axis=1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ExportOptions(matryoshka_dims=[16]), "Matryoshka"),
        (ExportOptions(lora={"a": "/nonexistent"}), "LoRA|adapter"),
        (ExportOptions(precision="fp16"), "fp16"),
    ],
)
def test_options_that_do_not_apply_are_refused(
    exported: Callable[[str, int], tuple[Path, Path]], tmp_path: Path, options: ExportOptions, message: str
) -> None:
    model, _ = exported("bert", 1)
    with pytest.raises(ExportError, match=message):
        export_model(str(model), tmp_path / "out", options)

"""Reranker graphs vs the model cards' reference code (tiny random-weight models) and an onnxruntime run of a
cross-encoder graph vs sentence-transformers' CrossEncoder.predict."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.rerankers import ClassifierGraph, LlmRerankerGraph, scoring_tokens
from trt_embed.runtime.outputs.pair_scores import default_activation, scores, yes_no_score


def _tiny(kind: str) -> torch.nn.Module:
    import transformers

    common = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = {
        "qwen3": lambda: transformers.Qwen3Config(head_dim=8, **common),
        "qwen2": lambda: transformers.Qwen2Config(**common),
        "gemma": lambda: transformers.GemmaConfig(head_dim=8, **common),
    }[kind]()
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("kind", ["qwen3", "qwen2", "gemma"])
def test_llm_reranker_rows_match_full_lm_head(kind: str) -> None:
    model = _tiny(kind)
    ids = torch.randint(1, 64, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as the cards pad
    tokens = [7, 11] if kind != "gemma" else [11]
    graph = LlmRerankerGraph(model, tokens).eval()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits[:, -1, :]  # the cards' reference
        got = graph(ids, mask)
    np.testing.assert_allclose(got.numpy(), full[:, tokens].numpy(), atol=1e-5)
    assert sum(p.numel() for p in graph.rows.parameters()) == len(tokens) * 32
    if kind == "qwen3":  # card: log_softmax over [no, yes], exp of the yes column
        pair = torch.stack([full[:, 7], full[:, 11]], dim=1)
        card = torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().numpy()
        np.testing.assert_allclose(yes_no_score(got[:, 0].numpy(), got[:, 1].numpy()), card, atol=1e-5)


def test_scoring_tokens_from_overrides_and_architecture() -> None:
    qwen3 = SimpleNamespace(architectures=["Qwen3ForCausalLM"])
    assert scoring_tokens(qwen3, {}) == ["no", "yes"]
    assert scoring_tokens(SimpleNamespace(architectures=["GemmaForCausalLM"]), {}) == ["Yes"]
    assert scoring_tokens(qwen3, {"classifier_from_token": ["0", "1"]}) == ["0", "1"]
    assert scoring_tokens(SimpleNamespace(architectures=None), {"is_original_qwen3_reranker": True}) == ["no", "yes"]
    with pytest.raises(ExportError, match="classifier_from_token"):
        scoring_tokens(SimpleNamespace(architectures=["LlamaForCausalLM"]), {})


def test_cross_encoder_graph_on_onnxruntime_matches_predict(tmp_path: Path) -> None:
    import onnxruntime as ort
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tests.runtime.test_pairs import MINILM, PAIRS
    from trt_embed.runtime.text.pairs import PairTokenizer

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=1
    )
    BertForSequenceClassification(config).eval().save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(tmp_path)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    graph = ClassifierGraph(BertForSequenceClassification.from_pretrained(tmp_path).eval())
    dummy = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():  # the tracer's warnings (pytest turns warnings into errors)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            dummy,
            tmp_path / "model.onnx",
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], PairTokenizer.from_file(tmp_path / "tokenizer.json", 512).encode_pairs(PAIRS))[0]
    got = scores(logits, default_activation(1))
    expected = CrossEncoder(str(tmp_path), device="cpu").predict(PAIRS, convert_to_numpy=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert list(np.argsort(-got)) == list(np.argsort(-expected))

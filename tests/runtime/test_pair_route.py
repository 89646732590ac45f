"""The pair route of cross-encoder artifacts (tiny random-weight BERT / XLM-R sequence classifiers exported with
default options): Runtime.score / rerank vs sentence-transformers' CrossEncoder.predict / rank, classify vs
transformers' forward with softmax, batched equal to one at a time, and bad requests refused by field."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.exporter.test_cross_encoder import _save
from tests.runtime.test_pairs import DOCS, PAIRS, QUERIES
from trt_embed.errors import InvalidRequest
from trt_embed.exporter.export import export_model
from trt_embed.runtime.runtime import Runtime


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, int], tuple[Path, Runtime]]]:
    made: dict[tuple[str, int], tuple[Path, Runtime]] = {}

    def make(kind: str, num_labels: int) -> tuple[Path, Runtime]:
        if (kind, num_labels) not in made:
            root = tmp_path_factory.mktemp(f"route_{kind}{num_labels}")
            model = _save(kind, num_labels, root / "model")
            export_model(str(model), root / "artifact")
            made[kind, num_labels] = model, Runtime.load(root / "artifact", workers=1)
        return made[kind, num_labels]

    yield make
    for _, runtime in made.values():
        runtime.close()


@pytest.mark.parametrize("kind", ["bert", "xlm_roberta"])
def test_score_and_rerank_equal_cross_encoder(loaded: Callable[[str, int], tuple[Path, Runtime]], kind: str) -> None:
    from sentence_transformers import CrossEncoder

    model, runtime = loaded(kind, 1)
    reference = CrossEncoder(str(model), device="cpu")
    got = runtime.score([q for q, _ in PAIRS], [d for _, d in PAIRS])
    np.testing.assert_allclose(got, reference.predict(PAIRS, convert_to_numpy=True), atol=1e-5)
    one_by_one = np.array([runtime.score(q, d)[0] for q, d in PAIRS])
    np.testing.assert_allclose(got, one_by_one, atol=1e-6)  # padded to other widths
    expected = reference.rank(QUERIES[0], DOCS, top_k=3)
    ranked = runtime.rerank(QUERIES[0], DOCS, top_n=3)
    assert [r.index for r in ranked] == [int(e["corpus_id"]) for e in expected]
    np.testing.assert_allclose([r.score for r in ranked], [float(e["score"]) for e in expected], atol=1e-5)


def test_classify_equals_transformers_softmax(loaded: Callable[[str, int], tuple[Path, Runtime]]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, runtime = loaded("bert", 3)
    torch_model = AutoModelForSequenceClassification.from_pretrained(model).eval()
    with torch.no_grad():
        logits = torch_model(**AutoTokenizer.from_pretrained(model)(DOCS, padding=True, return_tensors="pt")).logits
    probs = torch.softmax(logits, dim=-1).numpy()
    got = runtime.classify(DOCS)
    np.testing.assert_allclose([c.probs for c in got], probs, atol=1e-5)
    assert [c.label for c in got] == [torch_model.config.id2label[int(i)] for i in probs.argmax(axis=1)]
    assert all(c.num_classes == 3 for c in got)
    with pytest.raises(InvalidRequest, match="labels per pair") as info:
        runtime.rerank("q", ["d"])
    assert info.value.param == "model"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda r: r.rerank("q", []), "documents"),
        (lambda r: r.rerank("q", ["a", 3]), "documents"),
        (lambda r: r.rerank("q", ["a"], top_n=0), "top_n"),
        (lambda r: r.embed(["a text"]), "task"),
        (lambda r: r.classify([]), "input"),
    ],
)
def test_bad_requests_name_the_field(
    loaded: Callable[[str, int], tuple[Path, Runtime]], call: Callable[[Runtime], object], field: str
) -> None:
    _, runtime = loaded("bert", 1)
    with pytest.raises(InvalidRequest) as info:
        call(runtime)
    assert info.value.param == field


def test_embedder_refuses_classify(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel"), workers=1) as runtime, pytest.raises(InvalidRequest) as info:
        runtime.classify(["a text"])
    assert info.value.param == "task" and "classify" in str(info.value)

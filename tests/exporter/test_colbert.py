"""Stanford ColBERT checkpoints (colbert-ir/colbertv2.0's layout, see tests/tiny_models.py `save_colbert`):
export -> Runtime against a PyTorch reference written here from ColBERT's published code paths
(QueryTokenizer / DocTokenizer `tensorize`, `ColBERT.query` / `ColBERT.doc`, `colbert_score`), and MaxSim."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from trt_embed.runtime import Runtime

QUERIES = ["hello world", "what is a river?", "how fast is the light of one small city at night in the green year"]
DOCUMENTS = [
    "the cat, the dog!",
    "a river of water in the green city.",
    "hello world",
    "music? paper; light: the (small) house of one large people, with two computers and three blue rivers",
]
COSINE = 0.99999


class ColBERTReference:
    """ColBERT's encoders: ". " + text with the "." replaced by the marker; queries padded to query_maxlen and
    the padding turned into unattended [MASK]s, every position kept; documents cut to doc_maxlen, padding and
    punctuation dropped; vectors = normalize(linear(BERT states))."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.torch import load_file

        self.settings = json.loads((model_dir / "artifact.metadata").read_text())
        self.tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
        self.bert = transformers.BertModel.from_pretrained(str(model_dir)).eval()
        weight = load_file(str(model_dir / "model.safetensors"))["linear.weight"]
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.linear.weight.data = weight
        self.skiplist = {self.tok.encode(p, add_special_tokens=False)[0] for p in string.punctuation}

    def _vectors(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            states = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            return torch.nn.functional.normalize(self.linear(states), p=2, dim=2)

    def queries(self, texts: list[str]) -> list[np.ndarray]:
        length = self.settings["query_maxlen"]
        batch = self.tok([". " + t for t in texts], padding="max_length", truncation=True, max_length=length)
        ids, mask = torch.tensor(batch["input_ids"]), torch.tensor(batch["attention_mask"])
        ids[:, 1] = self.tok.convert_tokens_to_ids(self.settings["query_token_id"])
        ids[ids == self.tok.pad_token_id] = self.tok.mask_token_id
        if self.settings["attend_to_mask_tokens"]:
            mask[ids == self.tok.mask_token_id] = 1
        return list(self._vectors(ids, mask).numpy())  # no pad left: every position is kept

    def documents(self, texts: list[str]) -> list[np.ndarray]:
        length = self.settings["doc_maxlen"]
        batch = self.tok([". " + t for t in texts], padding="longest", truncation="longest_first", max_length=length)
        ids, mask = torch.tensor(batch["input_ids"]), torch.tensor(batch["attention_mask"])
        ids[:, 1] = self.tok.convert_tokens_to_ids(self.settings["doc_token_id"])
        vectors = self._vectors(ids, mask).numpy()
        keep = [[t not in self.skiplist and t != self.tok.pad_token_id for t in row] for row in ids.tolist()]
        return [v[np.array(k)] for v, k in zip(vectors, keep, strict=True)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def colbert(tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]) -> tuple[Path, Path]:
    return tiny_model("HF_ColBERT"), tiny_artifact("HF_ColBERT")


def test_queries_and_documents_match_colbert(colbert: tuple[Path, Path]) -> None:
    model_dir, artifact = colbert
    reference = ColBERTReference(model_dir)
    want_q, want_d = reference.queries(QUERIES), reference.documents(DOCUMENTS)
    with Runtime.load(artifact) as rt:
        assert rt.manifest.kind == "multi_vector" and rt.manifest.architecture == "HF_ColBERT"
        got_q = rt.encode(QUERIES, pooling_task="token_embed", prompt_name="query")
        got_d = rt.encode(DOCUMENTS, pooling_task="token_embed", prompt_name="document")
        default = rt.encode(DOCUMENTS, pooling_task="token_embed")  # documents unless asked for queries
        single = [rt.encode([d], pooling_task="token_embed")[0] for d in DOCUMENTS]
    assert [len(q) for q in want_q] == [reference.settings["query_maxlen"]] * len(QUERIES)
    assert len(want_d[-1]) == reference.settings["doc_maxlen"] - 6  # cut, and its six punctuation tokens dropped
    for got, want in [*zip(got_q, want_q, strict=True), *zip(got_d, want_d, strict=True)]:
        assert got.shape == want.shape
        assert cosines(got, want).min() >= COSINE
        np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)
    for n in range(len(DOCUMENTS)):
        np.testing.assert_allclose(default[n], got_d[n], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(single[n], got_d[n], rtol=1e-4, atol=1e-5)  # batched == single


def test_maxsim_scores_match_colbert_score(colbert: tuple[Path, Path]) -> None:
    """colbert_score: for each query vector the best document vector's dot product, summed."""
    model_dir, artifact = colbert
    reference = ColBERTReference(model_dir)
    query = reference.queries(QUERIES[:1])[0]
    want = [float((query @ d.T).max(axis=1).sum()) for d in reference.documents(DOCUMENTS)]
    with Runtime.load(artifact) as rt:
        got = rt.score(QUERIES[0], DOCUMENTS)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_inspect_and_markers(colbert: tuple[Path, Path]) -> None:
    from trt_embed.describe import describe

    _, artifact = colbert
    text = describe(artifact)
    assert "ColBERT-shaped token vectors" in text
    with Runtime.load(artifact) as rt:
        ids = rt.tokenizer.encode(["hello"], prompt=rt.manifest.prompts["query"]).ids[0]
        marker = rt.tokenizer.encode(["[unused0]"], add_special_tokens=False).ids[0]
    assert len(marker) == 1 and ids[1] == marker[0]  # the marker right after [CLS], one token

"""Chunked processing against an independent reference: each piece run through transformers' own model, pooled
(mean or CLS), the pieces combined by their token counts, then sliced and normalized once."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InputTooLong
from trt_embed.runtime import EmbedRequest, Runtime

SENTENCES = [
    "The river rose after three days of rain and flooded the lower fields.",
    "Engineers measured the bridge's sway with lasers mounted on both towers.",
    "A small bakery on the corner sells bread that is still warm at dawn.",
    "Researchers found that sleep improves the recall of newly learned words.",
]


def long_text(words: int) -> str:
    text = " ".join(SENTENCES * 40)
    return " ".join(text.split()[:words])


def reference(model_dir: Path, texts: list[str], limit: int, pooling: str) -> np.ndarray:
    """Pieces of at most `limit` tokens ([CLS] + content + [SEP] each), pooled by transformers' model, combined by
    a token-weighted mean (the reference's rule for every pooling), unnormalized."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
    out = []
    for text in texts:
        content = tok(text, add_special_tokens=False)["input_ids"]
        step = limit - 2
        pieces = [[tok.cls_token_id, *content[s : s + step], tok.sep_token_id] for s in range(0, len(content), step)]
        vectors, weights = [], []
        for ids in pieces:
            with torch.no_grad():
                hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
            vectors.append(hidden.mean(axis=0) if pooling == "mean" else hidden[0])
            weights.append(len(ids))
        w = np.asarray(weights, dtype=np.float64)
        out.append((w[:, None] * np.asarray(vectors, dtype=np.float64)).sum(axis=0) / w.sum())
    return np.asarray(out, dtype=np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_mean_pooling_minilm(minilm_artifact: Path, minilm_dir: Path) -> None:
    texts = [long_text(700), "a short one", long_text(300)]
    expected = unit(reference(minilm_dir, texts, 256, "mean"))
    with Runtime.load(minilm_artifact, chunked_processing=True) as rt:
        got = rt.embed(texts)
        np.testing.assert_allclose(got, expected, atol=2e-5)
        singles = np.concatenate([rt.embed([t]) for t in texts])
        np.testing.assert_allclose(singles, got, atol=1e-6)  # batched == single
        result = rt.run(EmbedRequest(inputs=texts, encodings=("float", "base64")))
        decoded = np.stack([np.frombuffer(base64.b64decode(b), "<f4") for b in result.encoded["base64"]])
        np.testing.assert_allclose(decoded, got, atol=0)
        assert result.num_tokens > 1000
    # chunking off: an over-long input is refused, as the reference does
    with Runtime.load(minilm_artifact) as rt, pytest.raises(InputTooLong, match="maximum context length is 256"):
        rt.embed(texts, truncate="none")


def test_cls_pooling_and_matryoshka(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    from trt_embed.exporter import ExportOptions, export_model

    model_dir = tiny_model("BertModel")
    out = tmp_path / "cls"
    export_model(str(model_dir), out, ExportOptions(precision="fp32", pooling="cls", matryoshka_dims=[16, 32]))
    texts = [long_text(300), "short words here"]
    with Runtime.load(out, chunked_processing=True, max_embed_len=2000) as rt:
        limit = rt.max_seq_length
        raw = reference(model_dir, texts, limit, "cls")
        np.testing.assert_allclose(rt.embed(texts, normalize=False), raw, atol=1e-4)
        np.testing.assert_allclose(rt.embed(texts, dimensions=16), unit(raw[:, :16]), atol=1e-4)
        with pytest.raises(InputTooLong, match="maximum embedding input length is 2000 tokens"):
            rt.embed([long_text(2500)])
        ids: Any = [list(range(5, 5 + 3 * limit))]  # token ids: cut into pieces as given
        pieces = [ids[0][s : s + limit] for s in range(0, len(ids[0]), limit)]
        combined = np.mean(rt.embed(pieces, normalize=False), axis=0)  # equal lengths: equal weights
        np.testing.assert_allclose(rt.embed(ids, normalize=False)[0], combined, atol=1e-5)

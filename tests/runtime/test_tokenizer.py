"""The runtime's tokenizer (Rust `tokenizers`, without character offsets) gives the ids transformers' tokenizer
gives, on the real all-MiniLM-L6-v2 and real paragraphs, for both truncation sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trt_embed.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("side", ["end", "start"])
def test_ids_equal_transformers(minilm_artifact: Path, side: str) -> None:
    transformers = pytest.importorskip("transformers")
    paragraphs = json.loads((ROOT / "benchmarks" / "data" / "corpus.json").read_text())[:200]
    texts = [*paragraphs, "Ünïcödé façade — naïve café", "tabs\tand\nnewlines", " ".join(paragraphs[:8])]
    with Runtime.load(minilm_artifact, workers=1) as runtime:
        ours = runtime.tokenize(texts, truncate=side).ids
        limit = runtime.max_seq_length
    reference = transformers.AutoTokenizer.from_pretrained(str(minilm_artifact / "tokenizer"))
    reference.truncation_side = "right" if side == "end" else "left"
    want = reference(texts, truncation=True, max_length=limit)["input_ids"]
    assert [list(row) for row in ours] == want
    assert max(map(len, want)) == limit, "one input is cut at the model's limit"

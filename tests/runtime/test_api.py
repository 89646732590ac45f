"""The Python API: Matryoshka, token-id inputs, token embeddings, score pairing, truncation, async twins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import InputTooLong, InvalidRequest, UnknownModel
from trt_embed.exporter import ExportOptions, export_model
from trt_embed.runtime import Runtime
from trt_embed.runtime.outputs.encoding import quantization_ranges

TEXTS = ["hello world", "the cat read a paper in the city", "blue water " * 20]


@pytest.fixture(scope="module")
def matryoshka_artifact(tiny_bert_artifact: Callable[..., Path]) -> Path:
    return tiny_bert_artifact({"matryoshka_dimensions": [64, 32, 16]})


def test_matryoshka_slices_then_normalizes(matryoshka_artifact: Path) -> None:
    with Runtime.load(matryoshka_artifact) as runtime:
        raw = runtime.embed(TEXTS, normalize=False)
        for dims in (16, 32):
            got = runtime.embed(TEXTS, dimensions=dims)
            oracle = raw[:, :dims] / np.linalg.norm(raw[:, :dims], axis=1, keepdims=True)
            np.testing.assert_allclose(got, oracle, atol=1e-6)
        np.testing.assert_allclose(runtime.embed(TEXTS, dimensions=32, normalize=False), raw[:, :32], atol=1e-6)
        with pytest.raises(InvalidRequest, match="not one this model supports: 16, 32, 64"):
            runtime.embed(TEXTS, dimensions=24)
        with pytest.raises(InvalidRequest, match="between 1 and 64"):
            runtime.embed(TEXTS, dimensions=0)


def test_any_dimension_when_exported_with_matryoshka_flag(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    export_model(str(tiny_model("BertModel")), tmp_path / "a", ExportOptions(precision="fp32", matryoshka_dims=[]))
    with Runtime.load(tmp_path / "a") as runtime:
        assert runtime.embed(TEXTS, dimensions=24).shape == (3, 24)
        with pytest.raises(InvalidRequest, match="between 1 and 64"):
            runtime.embed(TEXTS, dimensions=65)


def test_token_ids_equal_text(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        ids = runtime.tokenize(TEXTS).ids
        np.testing.assert_allclose(runtime.embed(ids), runtime.embed(TEXTS), atol=1e-6)
        with pytest.raises(InvalidRequest, match="outside the vocabulary"):
            runtime.embed([[1, 2, 10**6]])
        with pytest.raises(InvalidRequest, match="all strings or all token-id lists"):
            runtime.embed([[1, 2], "text"])  # type: ignore[list-item]


def test_token_embeddings_match_pytorch(
    tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]
) -> None:
    import torch
    import transformers

    model = transformers.BertModel.from_pretrained(str(tiny_model("BertModel"))).eval()
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        rows = runtime.encode(TEXTS, pooling_task="token_embed")
        for text, row in zip(TEXTS, rows, strict=True):
            ids = torch.tensor(runtime.tokenize([text]).ids)
            with torch.no_grad():
                expected = model(input_ids=ids).last_hidden_state[0].numpy()
            assert row.shape == expected.shape
            np.testing.assert_allclose(row, expected, atol=1e-4)


def test_score_pairing(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        e = runtime.embed(TEXTS)
        np.testing.assert_allclose(runtime.score(TEXTS[0], TEXTS[1]), [e[0] @ e[1]], atol=1e-6)
        np.testing.assert_allclose(runtime.score(TEXTS[0], TEXTS), e @ e[0], atol=1e-6)
        np.testing.assert_allclose(runtime.score(TEXTS, TEXTS[::-1]), (e * e[::-1]).sum(1), atol=1e-6)
        with pytest.raises(InvalidRequest, match="give one text_1"):
            runtime.score(TEXTS[:2], TEXTS)


def test_truncation_policies(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        long_text = " ".join(["hello world"] * 200)
        end = runtime.tokenize([long_text], truncate="end").ids[0]
        start = runtime.tokenize([long_text], truncate="start").ids[0]
        assert len(end) == len(start) == runtime.max_seq_length
        cls, sep = end[0], end[-1]
        assert start[0] == cls and start[-1] == sep, "special tokens survive truncation from the start"
        with pytest.raises(InputTooLong, match=r"maximum context length is 128 tokens. However, you requested \d+"):
            runtime.embed([long_text], truncate="none")
        short = runtime.tokenize(["the cat read a paper in the city"], max_tokens=5, truncate="start").ids[0]
        assert len(short) == 5 and short[0] == cls and short[-1] == sep
        assert runtime.embed([long_text], truncate_prompt_tokens=5).shape == (1, 64)
        np.testing.assert_allclose(
            runtime.embed(["the cat read a paper in the city"], truncate_prompt_tokens=5, truncate="start"),
            runtime.embed([short]),
            atol=1e-6,
        )


def test_async_twins_equal_sync(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:

        async def run() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
            return (
                await runtime.aembed(TEXTS),
                await runtime.ascore(TEXTS[0], TEXTS),
                await runtime.aencode(TEXTS, pooling_task="token_embed"),  # type: ignore[return-value]
            )

        embedded, scores, tokens = asyncio.run(run())
        np.testing.assert_allclose(embedded, runtime.embed(TEXTS), atol=1e-6)
        np.testing.assert_allclose(scores, runtime.score(TEXTS[0], TEXTS), atol=1e-6)
        for a, b in zip(tokens, runtime.encode(TEXTS, pooling_task="token_embed"), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_large_inputs_stream(tiny_artifact: Callable[[str], Path]) -> None:
    texts = [f"text number {i} " + "cat " * (i % 37) for i in range(2500)]
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        whole = runtime.embed(texts)
        streamed = np.concatenate(list(runtime.embed_stream(iter(texts), chunk_size=700)))
        np.testing.assert_allclose(whole, streamed, atol=2e-5)
        np.testing.assert_allclose(whole[1234], runtime.embed([texts[1234]])[0], atol=2e-5)


def test_unknown_variant(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime, pytest.raises(UnknownModel, match="available: base"):
        runtime.embed(TEXTS, model="nope")


def test_calibrated_int8_ranges(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        ranges = quantization_ranges(runtime.manifest, None, normalized=True)
        assert ranges.shape == (2, 64)
        assert (ranges[0] < ranges[1]).all()
        assert (np.abs(ranges) <= 1).all(), "ranges of normalized vectors"
        with pytest.raises(InvalidRequest, match="calibration ranges"):
            quantization_ranges(runtime.manifest, 8, normalized=True)

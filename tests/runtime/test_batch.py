"""Pad and pack: prepared inputs into engine batches and rows back out, and a ragged engine end to end."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import trt_embed.engines.select as select
from trt_embed.engines.base import Arrays, Batch, Engine, Outputs
from trt_embed.runtime import Runtime
from trt_embed.runtime.batching.batch import make_batch, pack_block, pad, rows_of
from trt_embed.runtime.batching.blocks import TokenBlock
from trt_embed.runtime.types import BatchKey, text_input

IDS = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
TEXTS = ["hello world", "a", "the cat read a paper in the city at night with music and light " * 3]


def test_pack_concatenates_with_cumulative_lengths() -> None:
    packed = pack_block(TokenBlock.from_lists(IDS, [[0] * len(r) for r in IDS]))
    assert packed["input_ids"].tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert packed["cu_seqlens"].tolist() == [0, 3, 4, 9]
    assert packed["token_type_ids"].shape == (9,)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_and_ragged_rows_cut_back_to_the_same_tokens(side: str) -> None:
    key = BatchKey("base", "token_embeddings", 0)
    items = [text_input(r) for r in IDS]
    padded = make_batch(key, items, layout="padded", pad_id=0, padding_side=side, pooling_mask=False)
    ragged = make_batch(key, items, layout="ragged", pad_id=0, padding_side=side, pooling_mask=False)
    assert padded.shape == ragged.shape == (3, 5)
    # Token "states" that are the token ids themselves: cutting must give back each input's ids, in order.
    padded_rows = rows_of(padded, "token_embeddings", padded.arrays["input_ids"][..., None].astype(np.float32), side)
    ragged_rows = rows_of(ragged, "token_embeddings", ragged.arrays["input_ids"][:, None].astype(np.float32), side)
    for want, a, b in zip(IDS, padded_rows, ragged_rows, strict=True):
        assert a[:, 0].tolist() == b[:, 0].tolist() == want


def test_pooling_mask_excludes_the_prompt_after_left_padding() -> None:
    key = BatchKey("base", "sentence_embedding", 2)
    batch = make_batch(
        key, [text_input(r) for r in IDS], layout="padded", pad_id=0, padding_side="left", pooling_mask=True
    )
    assert batch.arrays["pooling_mask"].tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1]]
    assert pad(IDS, None, pad_id=0)["attention_mask"].sum(1).tolist() == [3, 1, 5]


class RaggedOverPadded(Engine):
    """A ragged engine for the test: unpacks `cu_seqlens` and runs a padded engine underneath."""

    name = "ragged-test"
    layout = "ragged"

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner.entry)
        self.inner = inner
        self.input_names = ["input_ids", "token_type_ids", "cu_seqlens"]
        self.calls: list[int] = []

    def _infer(self, inputs: Arrays, outputs: list[str]) -> Outputs:
        bounds = inputs["cu_seqlens"].tolist()
        ids = [inputs["input_ids"][a:b].tolist() for a, b in itertools.pairwise(bounds)]
        self.calls.append(int(bounds[-1]))
        out = self.inner.infer(Batch.padded(pad(ids, None, pad_id=0)), outputs)
        if "token_embeddings" in out:  # padded [B, S, H] -> packed [T, H]
            states = out["token_embeddings"]
            out["token_embeddings"] = np.concatenate([states[n, : len(r)] for n, r in enumerate(ids)])
        return out


def test_a_ragged_engine_runs_through_the_whole_pipeline(
    tiny_artifact: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = tiny_artifact("BertModel")
    with Runtime.load(artifact, backend="onnxruntime-cpu", workers=1) as reference:
        want = reference.embed(TEXTS * 5)
        want_tokens = reference.encode(TEXTS, pooling_task="token_embed")
    row = select.BACKENDS["onnxruntime-cpu"]
    made: list[RaggedOverPadded] = []

    def open_ragged(artifact: object, want: select.Want) -> Engine:
        made.append(RaggedOverPadded(row.open(artifact, want)))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setitem(select.BACKENDS, "onnxruntime-cpu", dataclasses.replace(row, open=open_ragged))
    with Runtime.load(artifact, backend="onnxruntime-cpu", workers=1, max_batch_tokens=64) as runtime:
        assert runtime.spec.layout == "ragged"
        got = runtime.embed(TEXTS * 5)
        tokens = runtime.encode(TEXTS, pooling_task="token_embed")
    np.testing.assert_allclose(got, want, atol=2e-5)
    for a, b in zip(tokens, want_tokens, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    calls = made[0].calls
    assert len(calls) > 1 and max(calls) <= 64, "the ragged budget counts real tokens per call"

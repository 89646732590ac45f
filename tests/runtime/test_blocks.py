"""Token blocks: the arrays equal the per-input lists, units respect every budget, the scheduler merges units by
rows and tokens, and dense embed requests through blocks equal one engine call per input (texts and token ids,
sync and async, every error numbered in the request)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, processors

from trt_embed.engines.base import Batch, EngineSpec
from trt_embed.errors import InputTooLong, InvalidRequest
from trt_embed.manifest import ShapeProfile
from trt_embed.runtime import EmbedRequest, Runtime
from trt_embed.runtime.batching.batch import pad
from trt_embed.runtime.batching.blocks import TokenBlock, longest_first, split, units
from trt_embed.runtime.batching.scheduler import Scheduler
from trt_embed.runtime.routes.text import STREAM_CHUNK
from trt_embed.runtime.types import BatchKey, PreparedInput

KEY = BatchKey("base", "sentence_embedding", 0, route="tokens")


def random_lists(seed: int, count: int, longest: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1000, size=int(rng.integers(1, longest))).tolist() for _ in range(count)]


def test_a_block_holds_the_lists_and_reorders_them() -> None:
    rows = random_lists(0, 50)
    types = [[n % 2] * len(r) for n, r in enumerate(rows)]
    block = TokenBlock.from_lists(rows, types)
    assert block.lists() == rows and block.num_tokens == sum(map(len, rows))
    order = longest_first(block)
    assert [len(rows[i]) for i in order] == sorted(map(len, rows), reverse=True)
    moved = block.take(order)
    assert moved.lists() == [rows[i] for i in order]
    assert moved.type_ids is not None
    assert moved.type_ids.tolist() == [t for i in order for t in types[i]]
    part = moved.rows(3, 9)
    assert part.lists() == [rows[i] for i in order[3:9]]
    joined = TokenBlock.join([moved.rows(0, 3), TokenBlock.from_lists(rows[:2])])
    assert joined.lists() == [rows[i] for i in order[:3]] + rows[:2]
    assert joined.type_ids is not None and joined.type_ids[-len(rows[0]) - len(rows[1]) :].tolist() == [0] * (
        len(rows[0]) + len(rows[1])
    )
    assert TokenBlock.from_lists(rows, [[0] * len(r) for r in rows]).type_ids is None, "all-zero type ids are not kept"


@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_units_cover_the_block_in_order_within_every_limit(layout: str) -> None:
    block = TokenBlock.from_lists(random_lists(1, 300, longest=120))
    block = block.take(longest_first(block))
    profiles = (ShapeProfile(min=(1, 1), opt=(8, 64), max=(24, 128)),)
    for spec in (
        EngineSpec("fake", "cuda", layout=layout, max_batch_tokens=700, max_batch_size=40),  # type: ignore[arg-type]
        EngineSpec("fake", "cuda", layout=layout, max_batch_tokens=5000, max_batch_size=1000, profiles=profiles),  # type: ignore[arg-type]
    ):
        bounds = split(block, spec, spec.max_batch_tokens)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(block)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds)), "contiguous, in order"
        for start, stop in bounds:
            lengths = block.lengths[start:stop].tolist()
            assert stop - start <= spec.max_batch_size and spec.fits(stop - start, lengths[0])
            assert spec.cost(lengths) <= spec.max_batch_tokens or stop - start == 1
        made = units(block, spec, spec.max_batch_tokens)
        assert [u.rows for u in made] == [b - a for a, b in bounds]
        assert TokenBlock.join([u.features["block"] for u in made]).lists() == block.lists()


def test_the_scheduler_merges_units_by_rows_and_tokens() -> None:
    """Small units of concurrent requests share engine calls; a call never holds more rows or padded tokens than
    the spec allows; every unit gets its own rows back."""
    calls: list[tuple[int, int]] = []

    def run(key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        block = TokenBlock.join([item.features["block"] for item in items])
        calls.append((len(block), int(block.lengths.max()) * len(block)))
        sums = np.array([[float(sum(r))] for r in block.lists()], dtype=np.float32)
        return list(np.split(sums, np.cumsum([item.rows for item in items])[:-1]))

    spec = EngineSpec("fake", "cuda", max_batch_tokens=400, max_batch_size=12)
    scheduler = Scheduler(run, spec)
    try:
        requests = [TokenBlock.from_lists(random_lists(seed, 5, longest=30)) for seed in range(20)]
        futures = []
        for block in requests:
            block = block.take(longest_first(block))
            futures.append((block, scheduler.submit(KEY, units(block, spec, 400))))
        for block, future in futures:
            got = np.concatenate(future.result(timeout=30).rows)[:, 0]
            assert got.tolist() == [float(sum(r)) for r in block.lists()]
    finally:
        scheduler.close()
    assert all(rows <= 12 and padded <= 400 for rows, padded in calls), calls
    assert scheduler.stats.inputs == 100 and scheduler.stats.batches == len(calls) < 20, "units were merged"


def one_by_one(runtime: Runtime, ids: list[list[int]], normalize: bool = True) -> np.ndarray:
    """One engine call per input (normalized unless told): no scheduler, no block."""
    rows = []
    for row in ids:
        feeds = pad([row], None, pad_id=0)
        if "pooling_mask" in runtime.engine.input_names:
            feeds["pooling_mask"] = feeds["attention_mask"]
        out = runtime.engine.infer(Batch.padded(feeds), ["sentence_embedding"])["sentence_embedding"][0]
        rows.append(out / np.linalg.norm(out) if normalize else out)
    return np.stack(rows)


def test_dense_embed_through_blocks_equals_one_call_per_input(
    tiny_artifact: Callable[[str], Path], corpus: list[str]
) -> None:
    texts = [corpus[i % len(corpus)][: 20 + (13 * i) % 400] for i in range(STREAM_CHUNK + 150)]
    with Runtime.load(tiny_artifact("BertModel"), max_batch_tokens=2048) as runtime:
        ids = runtime.tokenize(texts).ids
        want = one_by_one(runtime, ids)
        np.testing.assert_allclose(runtime.embed(texts), want, atol=2e-5)
        np.testing.assert_allclose(runtime.embed(ids), want, atol=2e-5)
        np.testing.assert_allclose(runtime.embed([np.asarray(r) for r in ids[:40]]), want[:40], atol=2e-5)
        np.testing.assert_allclose(asyncio.run(runtime.aembed(texts[:300])), want[:300], atol=2e-5)
        np.testing.assert_allclose(asyncio.run(runtime.aembed(texts[:3])), want[:3], atol=2e-5)
        raw = one_by_one(runtime, ids[:50], normalize=False)
        np.testing.assert_allclose(runtime.embed(texts[:50], normalize=False), raw, atol=2e-5)
        assert runtime.scheduler.stats.inputs >= len(texts) * 2


def test_token_id_errors_keep_their_words_and_positions(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        vocab = runtime.manifest.vocab_size
        good = [[5, 6, 7]] * (STREAM_CHUNK + 40)
        cases: list[tuple[object, str]] = [
            ([10**9], r"has token ids outside the vocabulary"),
            ([-1, 4], r"has token ids outside the vocabulary"),
            ([2**70], r"has token ids outside the vocabulary|must be a string or a list of integer token ids"),
            ([], r"is an empty token list"),
            ([True, 3], r"must be a string or a list of integer token ids"),
            ([1.5, 3], r"must be a string or a list of integer token ids"),
            ("a text", r"inputs must be all strings or all token-id lists"),
        ]
        for bad, message in cases:
            for position in (7, STREAM_CHUNK + 11):
                inputs = list(good)
                inputs[position] = bad  # type: ignore[call-overload]
                where = rf"input\[{position}\]" if not isinstance(bad, str) else r"input\[\d+\]"
                with pytest.raises(InvalidRequest, match=where) as caught:
                    runtime.embed(inputs)
                assert caught.match(message)
        assert vocab is not None
        too_long = [[5] * (runtime.max_seq_length + 3)]
        with pytest.raises(InputTooLong):
            runtime.embed(too_long, truncate="none")
        kept = runtime.embed([*too_long, [5] * runtime.max_seq_length])
        np.testing.assert_allclose(kept[0], kept[1], atol=1e-6)


def test_texts_without_tokens_are_refused_by_position(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        texts = ["a text"] * 30
        texts[23] = "   "
        with pytest.raises(InvalidRequest, match=r"input\[23\] has no tokens"):
            runtime.run(EmbedRequest(inputs=texts, add_special_tokens=False))


def test_type_ids_are_read_only_when_the_template_sets_them(
    tiny_artifact: Callable[[str], Path], tmp_path: Path
) -> None:
    """A template that gives single texts type id 1 yields blocks with those type ids, equal to the lists."""
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        tokenizer = runtime.tokenizer
        texts = ["one small text", "another, longer text than the first one"]
        plain = tokenizer.encode_block(texts)
        assert plain.type_ids is None and plain.lists() == tokenizer.encode(texts).ids
        source = Tokenizer.from_str(tokenizer._plain.to_str())
        cls, sep = source.token_to_id("[CLS]"), source.token_to_id("[SEP]")
        source.post_processor = processors.TemplateProcessing(
            single="[CLS]:1 $A:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        path = tmp_path / "tokenizer.json"
        path.write_text(source.to_str())
        info = runtime.manifest.tokenizer
        from trt_embed.runtime.text.tokenizer import TextTokenizer

        typed = TextTokenizer(tmp_path, info, runtime.max_seq_length)
        block = typed.encode_block(texts)
        want = typed.encode(texts)
        assert block.lists() == want.ids
        assert block.type_ids is not None and block.type_ids.tolist() == [t for r in want.type_ids for t in r]
        assert set(block.type_ids.tolist()) == {1}


def test_large_requests_stream_in_chunks_of_about_what_the_engine_takes(tiny_artifact: Callable[[str], Path]) -> None:
    """Chunks hold at most STREAM_CHUNK inputs and about the tokens of the calls in flight (estimated from
    characters, capped at the model's limit), so long inputs come in small chunks and short ones in full ones."""
    from trt_embed.runtime.routes.token_blocks import MIN_CHUNK_TOKENS, TokenBlockRoute

    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        path = next(r for r in runtime.pipeline.routes if isinstance(r, TokenBlockRoute))
        spec = runtime.spec
        target = max(MIN_CHUNK_TOKENS, spec.max_batch_tokens * spec.concurrent_calls)
        limit = runtime.max_seq_length
        for sizes in (np.full(5000, 40), np.full(3000, 100_000), np.arange(4000, 0, -1)):
            bounds = path.chunk_bounds(sizes, texts=True)
            assert bounds[0][0] == 0 and bounds[-1][1] == len(sizes)
            estimate = np.minimum(sizes // 4 + 2, limit)
            for start, stop in bounds:
                assert stop - start <= STREAM_CHUNK
                assert estimate[start:stop].sum() <= target or stop - start == 1
            if sizes[0] == 40:
                assert all(b - a == STREAM_CHUNK for a, b in bounds[:-1]), "short inputs fill whole chunks"
            if sizes[0] == 100_000:
                assert bounds[0][1] == target // limit, "long inputs: a chunk of what the engine takes"

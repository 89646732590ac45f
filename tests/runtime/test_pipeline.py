"""The pipeline validates everything before any work is queued: bad requests never reach an engine."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.errors import InvalidRequest, UnknownModel
from trt_embed.manifest import Manifest
from trt_embed.runtime import Dense, EmbedRequest, Runtime, ScoreRequest, TokenVectors
from trt_embed.runtime.outputs.encoding import quantization_ranges, quantize, to_base64, ubinary

TEXTS = ["hello world", "the cat read a paper in the city", "blue water " * 20]


@pytest.fixture(scope="module")
def matryoshka(tiny_bert_artifact: Callable[..., Path]) -> Path:
    return tiny_bert_artifact({"matryoshka_dimensions": [64, 32, 12]})


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"dimensions": 24}, InvalidRequest, "not one this model supports"),
    ({"dimensions": 12, "encodings": ("binary",)}, InvalidRequest, "multiple of 8"),
    ({"dimensions": 12, "encodings": ("float", "ubinary")}, InvalidRequest, "multiple of 8"),
    ({"variant": "nope"}, UnknownModel, "not served"),
    ({"prompt_name": "nope"}, InvalidRequest, "unknown prompt name"),
    ({"prompt_name": "a", "prompt": "b"}, InvalidRequest, "either prompt or prompt_name"),
    ({"encodings": ("float16",)}, InvalidRequest, "encodings must be among"),
    ({"embed_dtype": "float64", "encodings": ("base64",)}, InvalidRequest, "embed_dtype"),
    ({"task": "bogus"}, InvalidRequest, "pooling task"),
    ({"task": "classify"}, InvalidRequest, "task 'classify' is not available for this model"),  # cross-encoders only
    ({"task": "token_embed", "dimensions": 32}, InvalidRequest, "embed task only"),
    ({"truncate": "middle"}, InvalidRequest, "truncate must be"),
    ({"truncate_prompt_tokens": 0}, InvalidRequest, "truncate_prompt_tokens"),
    ({"priority": True}, InvalidRequest, "priority"),
    ({"inputs": []}, InvalidRequest, "empty"),
    ({"inputs": "one string"}, InvalidRequest, "not a single string"),
]


def refused_before_any_engine_call(
    runtime: Runtime, request: EmbedRequest, error: type[Exception], message: str
) -> None:
    calls: list[int] = []
    run = runtime.pool.run

    def counting(*args: Any) -> Any:
        calls.append(1)
        return run(*args)

    runtime.scheduler._run_batch = counting
    with pytest.raises(error, match=message):
        runtime.run(request)
    with pytest.raises(error, match=message):
        runtime.pipeline.check(request)
    assert calls == [] and runtime.scheduler.stats.batches == 0, "a bad request reached the engine"
    runtime.run(EmbedRequest(inputs=TEXTS))
    assert calls == [1], "the counter sees good requests"


@pytest.mark.parametrize(("fields", "error", "message"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_requests_never_reach_an_engine(
    matryoshka: Path, fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with Runtime.load(matryoshka, workers=1) as runtime:
        refused_before_any_engine_call(runtime, EmbedRequest(**{"inputs": TEXTS, **fields}), error, message)


def test_int8_without_calibration_ranges_never_reaches_an_engine(matryoshka: Path, tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(matryoshka, copy)
    manifest = Manifest.read(copy)
    del manifest.calibration["ranges"]["32"]
    manifest.write(copy)
    with Runtime.load(copy, workers=1) as runtime:
        request = EmbedRequest(inputs=TEXTS, dimensions=32, encodings=("int8",))
        refused_before_any_engine_call(runtime, request, InvalidRequest, "calibration ranges")


def test_one_request_gives_every_encoding_asked_for(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        result = runtime.run(EmbedRequest(inputs=TEXTS, encodings=("float", "base64", "ubinary", "uint8")))
        assert isinstance(result.output, Dense)
        vectors = result.output.vectors
        np.testing.assert_allclose(vectors, runtime.embed(TEXTS), atol=1e-6)
        assert result.encoded["base64"] == to_base64(vectors)
        np.testing.assert_array_equal(np.array(result.encoded["ubinary"]), ubinary(vectors))
        ranges = quantization_ranges(runtime.manifest, None, normalized=True)
        np.testing.assert_array_equal(np.array(result.encoded["uint8"]), quantize(vectors, ranges, signed=False))
        assert result.num_tokens == sum(runtime.tokenize(TEXTS).lengths)
        assert result.timing.batches >= 1 and result.timing.inference > 0


def test_token_results_and_scores_are_their_own_kinds(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        tokens = runtime.run(EmbedRequest(inputs=TEXTS, task="token_embed"))
        assert isinstance(tokens.output, TokenVectors)
        assert [len(v) for v in tokens.output.vectors] == runtime.tokenize(TEXTS).lengths
        scored = runtime.run_score(ScoreRequest(first=TEXTS[0], second=TEXTS))
        vectors = runtime.embed(TEXTS)
        np.testing.assert_allclose(scored.scores, vectors @ vectors[0], atol=1e-6)


def test_observers_see_batches_and_requests(tiny_artifact: Callable[[str], Path]) -> None:
    seen: dict[str, list[Any]] = {"batch": [], "request": []}

    class Recorder:
        def batch(self, size: int, tokens: int, seconds: float) -> None:
            seen["batch"].append((size, tokens))

        def request(self, timing: Any) -> None:
            seen["request"].append(timing)

    with Runtime.load(tiny_artifact("BertModel"), workers=1) as runtime:
        runtime.add_observer(Recorder())
        runtime.embed(TEXTS)
    assert sum(size for size, _ in seen["batch"]) == len(TEXTS)
    assert len(seen["request"]) == 1


def test_a_wrong_keyword_fails_at_once(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime, pytest.raises(TypeError, match="dimension"):
        runtime.encode(TEXTS, dimension=8)
    with pytest.raises(TypeError, match="worker"):
        Runtime.load(tiny_artifact("BertModel"), worker=2)


def test_large_requests_stream_in_length_order_and_answer_in_request_order(
    tiny_artifact: Callable[[str], Path], corpus: list[str]
) -> None:
    """A request of several chunks runs its inputs in length order; rows come back in the request's order and
    equal small requests' rows; an error names the input's position in the request, not in its chunk."""
    from trt_embed.runtime.routes.text import STREAM_CHUNK

    texts = [corpus[i % len(corpus)][: 40 + (7 * i) % 300] for i in range(STREAM_CHUNK + 300)]
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        whole = runtime.embed(texts)
        parts = np.concatenate([runtime.embed(texts[i : i + 100]) for i in range(0, len(texts), 100)])
        np.testing.assert_allclose(whole, parts, atol=1e-5)
        ids = runtime.tokenize(texts).ids
        bad = STREAM_CHUNK + 17
        ids[bad] = [10**9]
        with pytest.raises(InvalidRequest, match=rf"^input\[{bad}\] has token ids outside the vocabulary"):
            runtime.embed(ids)


@pytest.mark.parametrize("task", ["embed", "token_embed"])
def test_async_requests_stream_as_sync_ones_do(
    tiny_artifact: Callable[[str], Path], corpus: list[str], task: str
) -> None:
    """`arun` is written once over the routes with `run`: a large request (token blocks for `embed`, the per-input
    route for `token_embed`) goes to the scheduler in several chunks, and its rows equal the synchronous ones."""
    import asyncio

    from trt_embed.runtime.routes.text import STREAM_CHUNK

    texts = [corpus[i % len(corpus)][: 10 + (7 * i) % 40] for i in range(STREAM_CHUNK + 100)]
    request = EmbedRequest(inputs=texts, task=task)  # type: ignore[arg-type]
    with Runtime.load(tiny_artifact("BertModel"), max_output_values=10**9) as runtime:
        want = runtime.run(request).output
        submitted: list[int] = []
        submit = runtime.scheduler.submit

        def counting(key: Any, items: Any, **kwargs: Any) -> Any:
            submitted.append(len(items))
            return submit(key, items, **kwargs)

        runtime.scheduler.submit = counting  # type: ignore[method-assign]
        got = asyncio.run(runtime.arun(request)).output
    assert len(submitted) > 1, "the async path streams a large request in chunks"
    if isinstance(want, Dense):
        assert isinstance(got, Dense)
        np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-5)
    else:
        assert isinstance(want, TokenVectors) and isinstance(got, TokenVectors)
        for a, b in zip(got.vectors, want.vectors, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)

"""Nothing lost, nothing hung: early refusals, cancelled callers, failing and hanging engine calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.engines.base import EngineSpec
from trt_embed.errors import EngineError, InvalidRequest, Overloaded, TooLarge
from trt_embed.runtime import EmbedRequest, Runtime
from trt_embed.runtime.batching.scheduler import Scheduler
from trt_embed.runtime.types import BatchKey, PreparedInput, text_input

KEY = BatchKey("base", "sentence_embedding", 0)
TEXTS = ["hello world", "the cat read a paper in the city", "blue water " * 20]


@pytest.mark.parametrize("text", ["", " ", "\u200b", "\ufeff"])
def test_an_input_without_tokens_is_refused_by_name(tiny_artifact: Callable[[str], Path], text: str) -> None:
    with Runtime.load(tiny_artifact("BertModel"), workers=1) as runtime:
        request = EmbedRequest(inputs=["fine", text], add_special_tokens=False)
        with pytest.raises(InvalidRequest, match=r"input\[1\] has no tokens"):
            runtime.run(request)
        assert runtime.scheduler.stats.batches == 0


def test_size_limits_refuse_before_any_work(tiny_artifact: Callable[[str], Path]) -> None:
    options = {"workers": 1, "max_queue": 4, "max_input_chars": 100, "max_output_values": 64 * 10}
    with Runtime.load(tiny_artifact("BertModel"), **options) as runtime:
        with pytest.raises(TooLarge, match="can never fit this server's queue of 4"):
            runtime.embed(["x"] * 5)
        with pytest.raises(TooLarge, match=r"input\[1\] has 101 characters; the limit is 100"):
            runtime.embed(["x", "y" * 101])
        with pytest.raises(TooLarge, match=r"token_embed over \d+ tokens returns"):
            runtime.encode(TEXTS[:2], pooling_task="token_embed")
        assert runtime.scheduler.stats.batches == 0
        assert len(runtime.encode(["hi"], pooling_task="token_embed")) == 1


def test_callers_that_give_up_leave_the_runtime_working(tiny_artifact: Callable[[str], Path]) -> None:
    texts = [f"text {i} " + "word " * (i % 30) for i in range(64)]
    with Runtime.load(tiny_artifact("BertModel"), workers=2) as runtime:
        expected = runtime.embed(texts)

        async def impatient() -> int:
            gave_up = 0
            for _ in range(20):
                try:
                    await asyncio.wait_for(runtime.aembed(texts), 0.001)
                except TimeoutError:
                    gave_up += 1
            return gave_up

        assert asyncio.run(impatient()) > 0
        np.testing.assert_allclose(runtime.embed(texts), expected, atol=2e-5)
        assert runtime.health()
        assert all(t.is_alive() for t in runtime.scheduler._threads)


class Engine:
    """A fake engine call: fails on inputs whose first id is `bad`, or blocks while `hold` is clear."""

    def __init__(self, bad: int | None = None) -> None:
        self.bad = bad
        self.hold = threading.Event()
        self.hold.set()
        self.sizes: list[int] = []

    def __call__(self, key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        self.hold.wait(10)
        self.sizes.append(len(items))
        firsts = [int(item.features["input_ids"][0]) for item in items]
        if self.bad in firsts:
            raise RuntimeError("device fell over")
        return [np.full(2, f, dtype=np.float32) for f in firsts]


def spec(size: int) -> EngineSpec:
    return EngineSpec("fake", "cpu", max_batch_tokens=1000, max_batch_size=size)


def test_a_failing_batch_fails_only_the_request_that_broke_it() -> None:
    engine = Engine(bad=7)
    engine.hold.clear()
    scheduler = Scheduler(engine, spec(8))
    blocker = scheduler.submit(KEY, [text_input([1])])
    time.sleep(0.05)  # the blocker is running: the next three requests queue up and share one batch
    good = scheduler.submit(KEY, [text_input([2]), text_input([3])])
    bad = scheduler.submit(KEY, [text_input([7])])
    other = scheduler.submit(KEY, [text_input([4])])
    engine.hold.set()
    assert blocker.result(5).rows[0][0] == 1
    with pytest.raises(EngineError, match="device fell over"):
        bad.result(5)
    assert [r[0] for r in good.result(5).rows] == [2, 3]
    assert other.result(5).rows[0][0] == 4
    assert 4 in engine.sizes, "the three requests were first tried together"
    scheduler.close()


def test_a_hung_engine_call_is_answered_and_reported() -> None:
    engine = Engine()
    engine.hold.clear()
    scheduler = Scheduler(engine, spec(8), engine_timeout=0.2)
    stuck = scheduler.submit(KEY, [text_input([1])])
    with pytest.raises(EngineError, match=r"ran past the 0\.2 s timeout"):
        stuck.result(5)
    assert not scheduler.healthy()
    engine.hold.set()
    deadline = time.monotonic() + 5
    while not scheduler.healthy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.healthy(), "healthy again once the call returns"
    assert scheduler.submit(KEY, [text_input([3])]).result(5).rows[0][0] == 3
    scheduler.close()


def test_overload_is_refused_before_preparation_and_says_when_to_retry() -> None:
    engine = Engine()
    engine.hold.clear()
    scheduler = Scheduler(engine, spec(1), max_queue=2)
    first = scheduler.submit(KEY, [text_input([1])])
    time.sleep(0.05)
    queued = scheduler.submit(KEY, [text_input([2]), text_input([3])])
    with pytest.raises(Overloaded, match="queue is full") as refused:
        scheduler.admit(1)
    assert refused.value.retry_after > 0
    engine.hold.set()
    assert first.result(5).rows[0][0] == 1 and len(queued.result(5).rows) == 2
    scheduler.close()


def test_one_large_request_keeps_every_worker_busy() -> None:
    """A single submit of many inputs must wake every worker, not one (it halved CPU throughput on long texts)."""
    active = [0]
    most = [0]
    lock = threading.Lock()

    def run(key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return [np.zeros(2, dtype=np.float32) for _ in items]

    scheduler = Scheduler(run, spec(1), workers=2)
    future = scheduler.submit(KEY, [text_input([n]) for n in range(1, 21)])
    assert len(future.result(10).rows) == 20
    scheduler.close()
    assert most[0] == 2, "both workers ran batches of the one request at the same time"

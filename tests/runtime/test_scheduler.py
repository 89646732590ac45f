"""Scheduler: batched == single under concurrency, overload refuses at once, priorities, failure isolation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from trt_embed.engines.base import EngineSpec
from trt_embed.errors import EngineError, Overloaded
from trt_embed.runtime import Runtime
from trt_embed.runtime.batching.scheduler import Scheduler
from trt_embed.runtime.types import BatchKey, PreparedInput, text_input

KEY = BatchKey("base", "sentence_embedding", 0)


def spec(max_batch_tokens: int, max_batch_size: int) -> EngineSpec:
    return EngineSpec("fake", "cpu", max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)


def inputs(ids: list[list[int]]) -> list[PreparedInput]:
    return [text_input(row) for row in ids]


def ids_of(items: list[PreparedInput]) -> list[list[int]]:
    return [list(item.features["input_ids"]) for item in items]


WORDS = ["the", "cat", "read", "a", "paper", "in", "the", "city", "at", "night", "with", "music", "and", "light"]


def mixed_texts(n: int) -> list[str]:
    rng = np.random.default_rng(n)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 60)))) for _ in range(n)]


def test_concurrent_threads_and_coroutines_match_single(tiny_artifact: Callable[[str], Path]) -> None:
    texts = mixed_texts(48)
    with Runtime.load(tiny_artifact("BertModel"), max_batch_tokens=512, max_batch_size=8) as runtime:
        single = np.concatenate([runtime.embed([t]) for t in texts])
        with ThreadPoolExecutor(8) as pool:
            by_thread = list(pool.map(lambda t: runtime.embed([t])[0], texts))
        np.testing.assert_allclose(np.stack(by_thread), single, atol=2e-5)

        async def many() -> list[np.ndarray]:
            chunks = [texts[i : i + 3] for i in range(0, len(texts), 3)]
            return await asyncio.gather(*(runtime.aembed(c) for c in chunks))

        by_coroutine = np.concatenate(asyncio.run(many()))
        np.testing.assert_allclose(by_coroutine, single, atol=2e-5)
        assert runtime.scheduler.stats.batches < runtime.scheduler.stats.inputs, "inputs were batched together"


class Gate:
    """A fake engine call that blocks until released and records what it ran."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[list[int]] = []
        self.fail_on = fail_on

    def __call__(self, key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        ids = ids_of(items)
        self.started.set()
        self.release.wait(10)
        self.calls.append([row[0] for row in ids])
        if self.fail_on is not None and any(row[0] == self.fail_on for row in ids):
            raise RuntimeError("device fell over")
        return [np.full(2, row[0], dtype=np.float32) for row in ids]


def test_overload_refuses_immediately_and_loses_nothing() -> None:
    gate = Gate()
    scheduler = Scheduler(gate, spec(1000, 1), max_queue=3)
    first = scheduler.submit(KEY, inputs([[0]]))
    assert gate.started.wait(5)
    accepted = [scheduler.submit(KEY, inputs([[i]])) for i in (1, 2, 3)]
    with pytest.raises(Overloaded, match="queue is full"):
        scheduler.submit(KEY, inputs([[4]]))
    gate.release.set()
    results = [f.result(5).rows[0][0] for f in [first, *accepted]]
    assert results == [0, 1, 2, 3]
    scheduler.close()


def test_priorities_lower_first_fifo_within() -> None:
    gate = Gate()
    scheduler = Scheduler(gate, spec(1000, 1))
    blocker = scheduler.submit(KEY, inputs([[99]]))
    assert gate.started.wait(5)
    futures = [
        scheduler.submit(KEY, inputs([[10]]), priority=5),
        scheduler.submit(KEY, inputs([[1]]), priority=0),
        scheduler.submit(KEY, inputs([[11]]), priority=5),
        scheduler.submit(KEY, inputs([[2]]), priority=0),
        scheduler.submit(KEY, inputs([[0]]), priority=-1),
    ]
    gate.release.set()
    for f in [blocker, *futures]:
        f.result(5)
    assert gate.calls == [[99], [0], [1], [2], [10], [11]]
    scheduler.close()


def test_failing_batch_fails_only_its_requests() -> None:
    gate = Gate(fail_on=7)
    gate.release.set()
    scheduler = Scheduler(gate, spec(1000, 1))
    good, bad, later = (scheduler.submit(KEY, inputs([[i]])) for i in (1, 7, 2))
    with pytest.raises(EngineError, match="device fell over"):
        bad.result(5)
    assert good.result(5).rows[0][0] == 1
    assert later.result(5).rows[0][0] == 2
    assert scheduler.submit(KEY, inputs([[3]])).result(5).rows[0][0] == 3, "still serving"
    assert scheduler.stats.failed_batches == 1
    scheduler.close()


def test_batches_respect_token_budget_and_keys() -> None:
    gate = Gate()
    gate.release.set()
    runs: list[tuple[BatchKey, list[int]]] = []

    def record(key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        ids = ids_of(items)
        runs.append((key, [len(r) for r in ids]))
        return [np.zeros(2, dtype=np.float32) for _ in ids]

    scheduler = Scheduler(record, spec(40, 16))
    other = BatchKey("lora", "sentence_embedding", 0)
    lengths = [10, 3, 12, 5, 9, 1, 7]
    f1 = scheduler.submit(KEY, inputs([[1] * n for n in lengths]))
    f2 = scheduler.submit(other, inputs([[1] * 4, [1] * 6]))
    f1.result(5)
    f2.result(5)
    scheduler.close()
    for _key, widths in runs:
        assert len(widths) * max(widths) <= 40
    assert sorted(n for key, w in runs if key == KEY for n in w) == sorted(lengths)
    assert all(key == other for key, w in runs if 4 in w or 6 in w)


def test_close_drains_accepted_work() -> None:
    gate = Gate()
    scheduler = Scheduler(gate, spec(1000, 2))
    futures = [scheduler.submit(KEY, inputs([[i]])) for i in range(5)]
    gate.release.set()
    scheduler.close()
    assert [f.result(0).rows[0][0] for f in futures] == [0, 1, 2, 3, 4]
    with pytest.raises(Overloaded, match="shutting down"):
        scheduler.submit(KEY, inputs([[1]]))


def test_concurrent_requests_of_mixed_lengths_pad_little() -> None:
    """Single-input requests of random lengths queued together are grouped by length, not by arrival."""
    gate = Gate()
    widths: list[list[int]] = []

    def record(key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        ids = ids_of(items)
        gate.started.set()
        gate.release.wait(10)
        widths.append([len(r) for r in ids])
        return [np.zeros(2, dtype=np.float32) for _ in ids]

    scheduler = Scheduler(record, spec(400, 64))
    blocker = scheduler.submit(KEY, inputs([[1] * 5]))
    assert gate.started.wait(5)
    lengths = np.random.default_rng(0).integers(5, 100, size=60).tolist()
    futures = [scheduler.submit(KEY, inputs([[1] * n])) for n in lengths]  # arrival order is random
    gate.release.set()
    for f in [blocker, *futures]:
        f.result(5)
    scheduler.close()
    real = sum(sum(w) for w in widths)
    padded = sum(len(w) * max(w) for w in widths)
    assert padded <= 1.25 * real, f"padding overhead {padded / real:.2f}"


def test_a_lone_batch_runs_on_the_latency_path_and_concurrent_ones_do_not() -> None:
    """`run_alone` takes a batch only when nothing else is queued or running."""
    gate = Gate()
    alone: list[list[int]] = []

    def solo(key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        alone.append([row[0] for row in ids_of(items)])
        return gate(key, items)

    scheduler = Scheduler(gate, spec(1000, 1), workers=2, run_alone=solo)
    first = scheduler.submit(KEY, inputs([[1]]))
    assert gate.started.wait(5)
    second = scheduler.submit(KEY, inputs([[2]]))  # the first is still running: throughput path
    deadline = time.monotonic() + 5
    while scheduler.queue_size and time.monotonic() < deadline:  # the other worker must take it before release
        time.sleep(0.001)
    gate.release.set()
    assert [first.result(5).rows[0][0], second.result(5).rows[0][0]] == [1, 2]
    third = scheduler.submit(KEY, inputs([[3]]))  # idle again: latency path
    assert third.result(5).rows[0][0] == 3
    scheduler.close()
    assert alone == [[1], [3]]
    assert scheduler.stats.alone_batches == 2 and scheduler.stats.batches == 3


def test_runtime_lone_queries_use_the_all_cores_engine(tiny_artifact: Callable[[str], Path]) -> None:
    texts = mixed_texts(12)
    with Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu", workers=2) as runtime:
        assert runtime.pool.alone is not None
        single = np.concatenate([runtime.embed([t]) for t in texts])
        assert runtime.scheduler.stats.alone_batches == len(texts)
    with Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu", workers=2, latency_engine=False) as plain:
        assert plain.pool.alone is None
        reference = plain.embed(texts)
        assert plain.scheduler.stats.alone_batches == 0
    np.testing.assert_allclose(single, reference, atol=2e-5)


def test_spread_splits_a_short_queue_over_the_cpu_workers() -> None:
    """CPU engines (flat cost per token): a queue too short to fill every worker's budget is split evenly,
    so no core idles; without `spread` (GPUs) the same queue is one full batch."""
    sizes: dict[bool, list[int]] = {}
    for spread in (False, True):
        runs: list[int] = []
        gate = Gate()

        def record(key: BatchKey, items: list[PreparedInput], runs: list[int] = runs, gate: Gate = gate) -> list:
            gate.started.set()
            gate.release.wait(10)
            runs.append(len(items))
            return [np.zeros(2, dtype=np.float32) for _ in items]

        scheduler = Scheduler(record, spec(8192, 1000), workers=2, spread=spread)
        blockers = [scheduler.submit(KEY, inputs([[1] * 10]), priority=-n) for n in (1, 2)]  # one batch each
        deadline = time.monotonic() + 5
        while scheduler.queue_size and time.monotonic() < deadline:  # both workers hold a blocker
            time.sleep(0.001)
        future = scheduler.submit(KEY, inputs([[1] * 10] * 200))  # 2,000 tokens queued
        gate.release.set()
        assert len(future.result(5).rows) == 200
        assert [len(b.result(5).rows) for b in blockers] == [1, 1]
        scheduler.close()
        sizes[spread] = sorted(runs)[2:]  # the two one-input blockers first
    assert sizes[False] == [200]
    assert max(sizes[True]) == 100 and sum(sizes[True]) == 200, f"half the queue per worker: {sizes[True]}"


def test_random_queues_answer_every_input_once_in_priority_order() -> None:
    """Mixed keys, priorities and lengths queued while the engine is busy: every input comes back to its own
    request, each batch has one key and priority and stays within the budget, and priorities run in order."""
    rng = np.random.default_rng(7)
    gate = Gate()
    batches: list[tuple[BatchKey, list[list[int]]]] = []

    def record(key: BatchKey, items: list[PreparedInput]) -> list[np.ndarray]:
        gate.started.set()
        gate.release.wait(10)
        ids = ids_of(items)
        batches.append((key, ids))
        return [np.array(row[:2], dtype=np.float32) for row in ids]

    keys = [KEY, BatchKey("lora", "sentence_embedding", 0)]
    scheduler = Scheduler(record, spec(300, 16))
    blocker = scheduler.submit(KEY, inputs([[0, 0]]), priority=-10)
    assert gate.started.wait(5)
    expected = {}
    for request in range(40):
        priority = int(rng.integers(0, 3))
        rows = [[priority, request, *([1] * int(rng.integers(0, 40)))] for _ in range(int(rng.integers(1, 12)))]
        future = scheduler.submit(keys[request % 2], inputs(rows), priority=priority)
        expected[future] = rows
    gate.release.set()
    blocker.result(5)
    for future, rows in expected.items():
        got = future.result(5).rows
        assert [list(r) for r in got] == [[float(row[0]), float(row[1])] for row in rows]
    scheduler.close()
    order = [ids[0][0] for _, ids in batches[1:]]
    assert order == sorted(order), "lower priorities first"
    for key, ids in batches[1:]:
        assert len({row[0] for row in ids}) == 1, "one priority per batch"
        assert all((keys[row[1] % 2] == key) for row in ids), "one key per batch"
        assert len(ids) * max(map(len, ids)) <= 300

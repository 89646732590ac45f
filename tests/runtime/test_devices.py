"""Several devices: one engine per GPU, the scheduler's workers spread over them. GPUs cannot run here, so the
"GPUs" are CPU engines that record which device each call ran on; the results must equal a one-device runtime's."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.cli import devices
from trt_embed.engines.select import Choice, Want
from trt_embed.errors import InvalidRequest
from trt_embed.runtime import Runtime
from trt_embed.runtime.batching import engine_pool


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[int]:
    """open_engine opens a single-threaded CPU engine per "GPU", reported as onnxruntime-cuda; returns the
    engine calls per device (and which thread made them)."""
    calls: collections.Counter[int] = collections.Counter()
    threads: dict[int, set[str]] = collections.defaultdict(set)
    real_open = engine_pool.open_engine

    def fake_open(artifact: Any, *, backend: str = "auto", want: Want | None = None) -> Choice:
        want = want or Want()
        engine = real_open(artifact, backend="onnxruntime-cpu", want=dataclasses.replace(want, threads=1)).engine
        inner = engine._infer

        def infer(inputs: Any, outputs: list[str], device: int = want.device) -> Any:
            calls[device] += 1
            threads[device].add(threading.current_thread().name)
            time.sleep(0.003)  # a GPU call takes a while: both workers get batches
            return inner(inputs, outputs)

        engine._infer = infer  # type: ignore[method-assign]
        return Choice(engine, "onnxruntime-cuda", "fake GPU")

    monkeypatch.setattr(engine_pool, "open_engine", fake_open)
    calls.threads = threads  # type: ignore[attr-defined]
    return calls


def test_batches_spread_over_every_device(
    tiny_artifact: Callable[[str], Path], corpus: list[str], fake_gpus: collections.Counter[int]
) -> None:
    artifact = tiny_artifact("BertModel")
    texts = corpus[:120]
    with Runtime.load(artifact, backend="onnxruntime-cpu", workers=1) as single:
        reference = single.embed(texts)
    fake_gpus.clear()
    with Runtime.load(artifact, devices=(2, 5), max_batch_size=4) as runtime:
        assert runtime.pool.devices == [2, 5]
        in_flight = 2  # onnxruntime-cuda's calls in flight per GPU
        assert runtime.pool.workers == 2 * in_flight and runtime.spec.concurrent_calls == 2 * in_flight
        assert "GPUs 2, 5" in runtime.backend_reason
        got = runtime.embed(texts)
        assert set(fake_gpus) == {2, 5}
        assert min(fake_gpus.values()) >= 5, fake_gpus  # both did real work
        threads = fake_gpus.threads  # type: ignore[attr-defined]
        assert not threads[2] & threads[5]  # a worker stays on its device
    np.testing.assert_allclose(got, reference, atol=2e-5)


def test_all_devices_and_workers_per_device(
    tiny_artifact: Callable[[str], Path], fake_gpus: collections.Counter[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trt_embed.engines import cuda

    monkeypatch.setattr(cuda, "gpu_count", lambda: 3)
    with Runtime.load(tiny_artifact("BertModel"), devices="all", workers=2) as runtime:
        assert runtime.pool.devices == [0, 1, 2]
        assert runtime.pool.workers == 6
        assert len(runtime.engines) == 6, "one engine per call in flight on each GPU"
        runtime.embed(["a", "b"])


def test_devices_on_a_cpu_backend_is_a_clear_error(tiny_artifact: Callable[[str], Path]) -> None:
    with pytest.raises(InvalidRequest, match="devices selects GPUs"):
        Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu", devices=(0, 1))


def test_devices_option_parses() -> None:
    assert devices("0,1") == (0, 1)
    assert devices("all") == "all"
    for bad in ("", "0,0", "gpu0", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            devices(bad)

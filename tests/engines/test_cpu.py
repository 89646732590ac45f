"""CPU facts and the measured choice between one call per core and one call over all cores."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.engines import cpu
from trt_embed.runtime import Runtime

TEXTS = ["hello world", "the cat read a paper in the city", "blue water " * 20]


def test_cpu_facts_name_this_machine() -> None:
    facts = cpu.cpu_facts()
    assert facts.cores >= 1 and facts.model
    assert set(facts.isa) <= set(cpu.ISA_OF_INTEREST)
    assert str(facts.cores) in facts.describe()


def test_the_faster_layout_wins() -> None:
    def sleeper(seconds: float) -> Callable[[], int]:
        def call() -> int:
            time.sleep(seconds)
            return 100

        return call

    # Two threads each sleeping 10 ms do 2x the tokens of one call of 10 ms: per-core wins...
    assert cpu.measure_layouts(sleeper(0.01), sleeper(0.01), cores=2, budget_s=0.1).layout == "per-core"
    # ... unless the all-cores call is more than twice as fast.
    assert cpu.measure_layouts(sleeper(0.01), sleeper(0.002), cores=2, budget_s=0.1).layout == "all-cores"


def test_measurements_are_cached_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "tuning_file", lambda: tmp_path / "cpu-tuning.json")
    runs: list[int] = []

    def measure() -> cpu.Measured:
        runs.append(1)
        return cpu.Measured("all-cores", 1.0, 2.0)

    assert cpu.cached_layout(["graph-a"], measure).layout == "all-cores"
    assert cpu.cached_layout(["graph-a"], measure).layout == "all-cores"
    assert len(runs) == 1, "the second load read the cache"
    cpu.cached_layout(["graph-b"], measure)
    assert len(runs) == 2, "another graph is measured on its own"


@pytest.mark.parametrize("layout", ["per-core", "all-cores"])
def test_both_layouts_embed_the_same(tiny_artifact: Callable[[str], Path], layout: str) -> None:
    with Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu") as reference:
        want = reference.embed(TEXTS)
    with Runtime.load(tiny_artifact("BertModel"), backend="onnxruntime-cpu", cpu_layout=layout) as runtime:
        if cpu.cpu_facts().cores > 1:
            assert (runtime.pool.workers == 1) == (layout == "all-cores")
            assert "CPU layout" in runtime.backend_reason or layout == "per-core"
        np.testing.assert_allclose(runtime.embed(TEXTS), want, atol=2e-5)

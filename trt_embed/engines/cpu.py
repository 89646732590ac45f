"""CPU facts (model, cores, instruction sets) and the measured choice of how to spread engine calls over cores.

Whether one engine call over all cores or one single-threaded call per core is faster depends on the CPU (it
flipped between an Intel Xeon with AMX and an AMD EPYC of the same size), the model and the batch shape. So it is
measured, not guessed: on first load both layouts run the same batch for a fraction of a second, and the choice is
cached per CPU, graph and library version.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

CpuLayout = Literal["per-core", "all-cores"]
# Instruction sets that decide which kernels run (x86: /proc/cpuinfo flags; ARM: Features).
ISA_OF_INTEREST = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
    "bf16",
    "i8mm",
)


@dataclasses.dataclass(frozen=True)
class CpuFacts:
    model: str
    cores: int
    isa: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.model}, {self.cores} cores, {' '.join(self.isa) or 'no listed ISA extensions'}"

    @property
    def int8_saturates(self) -> bool:
        """An x86 CPU without VNNI/AMX: its 8-bit dot products (VPMADDUBSW) add pairs into 16 bits, which
        saturate on transformer activations (all-MiniLM-L6-v2's static int8 graph: mean cosine 0.991, worst
        0.959 on an AVX2-only AMD EPYC, against 0.997 / 0.98 with VNNI)."""
        return "avx2" in self.isa and not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(self.isa)


@functools.cache
def cpu_facts() -> CpuFacts:
    """This machine's CPU, from /proc/cpuinfo where there is one (Linux), else from the platform module."""
    from trt_embed.engines.onnxruntime import default_threads

    model, flags = platform.processor() or platform.machine(), set[str]()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and value.strip():
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    return CpuFacts(model=model, cores=default_threads(), isa=tuple(f for f in ISA_OF_INTEREST if f in flags))


@dataclasses.dataclass(frozen=True)
class Measured:
    layout: CpuLayout
    per_core_tokens_per_s: float
    all_cores_tokens_per_s: float

    def describe(self) -> str:
        chosen = "one single-threaded call per core" if self.layout == "per-core" else "one call over all cores"
        return (
            f"CPU layout: {chosen} (measured {self.per_core_tokens_per_s:,.0f} tokens/s per-core vs "
            f"{self.all_cores_tokens_per_s:,.0f} all-cores)"
        )


def measure_layouts(
    per_core: Callable[[], int], all_cores: Callable[[], int], cores: int, budget_s: float = 0.4
) -> Measured:
    """Time `cores` threads each calling `per_core` against `all_cores` called alone; each call returns the
    tokens it processed. Each layout gets about `budget_s / 2` seconds after a warm-up call."""
    all_cores()
    per_core()
    started = time.perf_counter()
    tokens = all_cores()
    one_call = max(time.perf_counter() - started, 1e-4)
    repeats = max(2, int(budget_s / 2 / one_call))

    started = time.perf_counter()
    done = sum(all_cores() for _ in range(repeats))
    whole = done / (time.perf_counter() - started)

    counts = [0] * cores

    def worker(n: int) -> None:
        counts[n] = sum(per_core() for _ in range(repeats))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(cores)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parallel = sum(counts) / (time.perf_counter() - started)
    del tokens
    layout: CpuLayout = "per-core" if parallel >= whole else "all-cores"
    return Measured(layout, parallel, whole)


def tuning_file() -> Path:
    from trt_embed.defaults import cache_dir

    return cache_dir() / "cpu-tuning.json"


def cached_layout(key_parts: list[str], measure: Callable[[], Measured]) -> Measured:
    """The measured layout for this CPU and graph, from the cache or measured now and cached."""
    facts = cpu_facts()
    key = hashlib.sha256("\n".join(map(str, [facts.describe(), *key_parts])).encode()).hexdigest()[:16]
    path = tuning_file()
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        try:
            return Measured(**cache[key])
        except TypeError:
            pass
    measured = measure()
    cache[key] = dataclasses.asdict(measured)
    try:  # a cache, not a requirement: a read-only home only costs the measurement next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return measured

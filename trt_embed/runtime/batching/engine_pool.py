"""The runtime's engines: one per variant in use (opened on first use), the all-cores latency engine, and
the step that turns a scheduled group of prepared inputs into an engine call and rows."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from trt_embed.artifact import Artifact
from trt_embed.engines.base import Batch, Engine, EngineSpec
from trt_embed.engines.cpu import cached_layout, cpu_facts, measure_layouts
from trt_embed.engines.onnxruntime import default_threads
from trt_embed.engines.select import BACKENDS, CPU_BACKENDS, Want, open_engine
from trt_embed.errors import InvalidRequest, UnknownModel
from trt_embed.runtime.batching.batch import make_batch
from trt_embed.runtime.options import RuntimeOptions
from trt_embed.runtime.types import BatchKey, PreparedInput, Row, text_input

log = logging.getLogger("trt_embed")


class EngineWork(Protocol):
    """The engine half of a route (`routes/`): which graph runs its batches, how items become a batch and the
    engine's outputs become rows."""

    @property
    def tower(self) -> Literal["text", "image"]: ...

    def batch(self, engine: Engine, key: BatchKey, items: Sequence[PreparedInput]) -> Batch: ...

    def rows(
        self, key: BatchKey, items: Sequence[PreparedInput], batch: Batch, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> list[Row]: ...


class EnginePool:
    """Opens and runs the engines of one artifact. Thread-safe: scheduler workers call `run` concurrently.

    Engines are opened per variant and lane. On CPU there is one lane, the CPU, and its workers make one
    single-threaded call per core on its engine; with GPUs, each GPU in `options.devices` has one lane per call in
    flight, and each scheduler worker is bound to one lane on its first call, round robin, so batches spread over
    every GPU and each worker's calls have a session (and stream) of their own.
    """

    def __init__(self, artifact: Artifact, options: RuntimeOptions) -> None:
        self.artifact = artifact
        self.default_variant = options.variant
        # On CPU, one single-threaded engine call per core (`workers`) beats one call over all cores for
        # encoders of this size (measured with all-MiniLM-L6-v2); GPUs take the backend's calls in flight.
        cpu_workers = options.workers or default_threads()
        threads = options.threads if options.threads is not None else (1 if cpu_workers > 1 else None)
        asked = options.devices if isinstance(options.devices, tuple) else ()
        self._want = Want(
            precision=options.precision,
            variant=options.variant,
            threads=threads,
            verify=options.verify,
            device=asked[0] if asked else 0,
        )
        self._engines: dict[tuple[str, int], Engine] = {}
        self._lock = threading.Lock()
        choice = open_engine(artifact, backend=options.backend, want=self._want)
        self.backend = choice.backend
        self.reason = choice.reason
        cpu = self.backend in CPU_BACKENDS
        self.devices = self._resolve_devices(options.devices, cpu, choice.engine)
        self.workers = options.workers or (cpu_workers if cpu else BACKENDS[self.backend].calls_in_flight)
        # A lane is one engine and the workers bound to it. CPU: one lane (its workers share the engine, one
        # single-threaded call each). GPUs: one lane per call in flight on each GPU, each its own session and
        # CUDA stream, so one call's copies and host work overlap another's kernels instead of queueing behind
        # them on a shared stream.
        self._open_lanes(choice.engine, 1 if cpu else self.workers)
        log.info("trt-embed backend %s: %s", self.backend, self.reason)
        self._local = threading.local()
        self._turn = itertools.count()
        self.alone: Engine | None = None
        vlm = artifact.manifest.vlm
        choose = cpu and self.workers > 1 and options.threads is None and options.workers is None and vlm is None
        if cpu and self.workers > 1 and options.threads is None and (options.latency_engine or choose):
            whole = Want(precision=options.precision, variant=options.variant, threads=None, verify=options.verify)
            self.alone = open_engine(artifact, backend=self.backend, want=whole).engine
        facts = BACKENDS[self.backend]
        if choose and self.alone is not None and options.cpu_layout != "per-core":
            self._choose_cpu_layout(options, facts.max_batch_tokens)
        self.images: Engine | None = None  # two-tower and vision-language models: the image graph, same backend
        if artifact.manifest.vision is not None or vlm is not None:
            want = dataclasses.replace(self._want, modality="image")
            self.images = open_engine(artifact, backend=self.backend, want=want).engine
        self.routes: Mapping[str, EngineWork] = {}  # `BatchKey.route` -> its engine half (set by the runtime)
        engine = self.engine
        self.workers *= len(self.devices)
        batch_size = options.max_batch_size or facts.max_batch_size
        profile_max = max((p.max[0] for p in engine.profiles), default=batch_size)
        self.spec: EngineSpec = engine.spec(
            max_batch_tokens=options.max_batch_tokens or facts.max_batch_tokens,
            max_batch_size=min(batch_size, profile_max),
            concurrent_calls=self.workers,
        )

    def _open_lanes(self, first: Engine, per_device: int) -> None:
        """One engine per lane of the default variant (`first`: the first lane's, already open)."""
        self._lanes = [device for _ in range(per_device) for device in self.devices]
        self._engines[self.default_variant, 0] = first
        for lane, device in enumerate(self._lanes[1:], start=1):
            want = dataclasses.replace(self._want, device=device)
            self._engines[self.default_variant, lane] = open_engine(
                self.artifact, backend=self.backend, want=want
            ).engine
        if len(self.devices) > 1:
            self.reason += f"; one engine on each of GPUs {', '.join(map(str, self.devices))}"
        if per_device > 1:
            self.reason += f"; {per_device} engines per GPU (one per call in flight)"

    def _resolve_devices(self, devices: tuple[int, ...] | Literal["all"] | None, cpu: bool, first: Engine) -> list[int]:
        """The GPU indices to open engines on; [0] for CPU backends (the CPU is one device)."""
        if devices is None:
            return [0]
        if cpu:
            first.close()
            raise InvalidRequest(
                f"devices selects GPUs, and the {self.backend} backend runs on the CPU; spread CPU work over "
                "cores with workers instead",
                "devices",
            )
        if isinstance(devices, str):  # "all"
            from trt_embed.engines.cuda import gpu_count

            return list(range(max(1, gpu_count())))
        if not devices or len(set(devices)) != len(devices) or min(devices) < 0:
            first.close()
            raise InvalidRequest(f"devices must be distinct GPU indices, got {devices!r}", "devices")
        return list(devices)

    def _lane(self) -> int:
        """The lane of the calling scheduler worker: bound on its first call, round robin over the lanes (GPUs
        first, so the first workers spread over every GPU)."""
        lane: int | None = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = next(self._turn) % len(self._lanes)
        return lane

    def _choose_cpu_layout(self, options: RuntimeOptions, max_batch_tokens: int) -> None:
        """Measure (or read the cached measurement of) one call over all cores against one single-threaded call
        per core, and keep the faster. All-cores: the all-cores engine becomes the only engine, one worker."""
        single, whole = self._engines[options.variant, 0], self.alone
        assert whole is not None
        if options.cpu_layout == "auto":
            batch = self._sample_batch(options.max_batch_tokens or max_batch_tokens)

            def run(engine: Engine) -> Callable[[], int]:
                def call() -> int:
                    engine.infer(batch, engine.output_names[:1])  # the first output: every graph has one
                    return sum(batch.lengths)

                return call

            library = "openvino" if self.backend == "openvino-cpu" else "onnxruntime"
            versions = f"{library} {importlib.import_module(library).__version__}"
            key = [self.backend, options.precision, str(single.entry.sha256), versions, str(batch.shape)]
            measured = cached_layout(key, lambda: measure_layouts(run(single), run(whole), self.workers))
            self.reason += f"; {measured.describe()} on {cpu_facts().describe()}"
            if measured.layout == "per-core":
                if not options.latency_engine:
                    whole.close()
                    self.alone = None
                return
        else:
            self.reason += f"; CPU layout: one call over all cores (requested) on {cpu_facts().describe()}"
        single.close()
        self._engines[options.variant, 0] = whole
        self.alone = None
        self.workers = 1
        self._want = dataclasses.replace(self._want, threads=None)

    def _sample_batch(self, max_batch_tokens: int) -> Batch:
        """A padded batch of random in-vocabulary ids shaped like a typical budget-filling batch."""
        manifest = self.artifact.manifest
        seq = min(128, manifest.max_seq_length)
        rows = max(1, max_batch_tokens // seq)
        vocab = manifest.vocab_size or 1000
        ids = np.random.default_rng(0).integers(min(1000, vocab // 2), vocab, size=(rows, seq)).tolist()
        key = BatchKey(self.default_variant, "sentence_embedding", 0)
        engine = self.engine
        return make_batch(
            key,
            [text_input(row) for row in ids],
            layout=engine.layout,
            pad_id=manifest.tokenizer.pad_token_id,
            padding_side=manifest.tokenizer.padding_side,
            pooling_mask="pooling_mask" in engine.input_names,
        )

    @property
    def variants(self) -> list[str]:
        return self.artifact.variants

    @property
    def engine(self) -> Engine:
        """The engine of the default variant (on the first device)."""
        return self._engines[self.default_variant, 0]

    @property
    def engines(self) -> list[Engine]:
        """Every loaded engine: one per variant in use, plus the all-cores latency engine if any."""
        extra = [e for e in (self.alone, self.images) if e is not None]
        return [*self._engines.values(), *extra]

    def engine_for(self, variant: str | None = None, lane: int = 0) -> Engine:
        """The engine of a variant on a lane (default: the first device's first), loaded on first use."""
        name = variant or self.default_variant
        where = (name, lane)
        if where not in self._engines:
            if name not in self.variants:
                raise UnknownModel(f"variant {name!r} is not served; available: {', '.join(self.variants)}")
            with self._lock:
                if where not in self._engines:
                    want = dataclasses.replace(self._want, variant=name, device=self._lanes[lane])
                    self._engines[where] = open_engine(self.artifact, backend=self.backend, want=want).engine
        return self._engines[where]

    def run(self, key: BatchKey, items: list[PreparedInput]) -> list[Row]:
        """One engine call on the calling worker's lane; returns one array per input."""
        return self._run_on(self.engine_for(key.variant, self._lane()), key, items)

    def run_alone(self, key: BatchKey, items: list[PreparedInput]) -> list[Row]:
        """A batch that is the only work: on the all-cores engine when it serves this variant."""
        engine = self.alone if key.variant == self.default_variant else None
        return self._run_on(engine or self.engine_for(key.variant), key, items)

    def _run_on(self, engine: Engine, key: BatchKey, items: list[PreparedInput]) -> list[Row]:
        """One batch through its route: the route makes the batch and cuts the rows; the pool runs the graph."""
        route = self.routes[key.route]
        if route.tower == "image":
            assert self.images is not None, "an image route runs on an artifact with an image graph"
            engine = self.images
        batch = route.batch(engine, key, items)
        return route.rows(key, items, batch, engine.infer(batch, key.output.split("+")))

    def health(self) -> bool:
        return all(engine.health() for engine in self.engines)

    def close(self) -> None:
        for engine in self.engines:
            engine.close()

"""`Runtime`: load an artifact, tokenize, batch through the scheduler and engine, post-process."""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from trt_embed.errors import InvalidRequest, UnknownModel
from trt_embed.manifest import Manifest
from trt_embed.runtime.artifact import Artifact
from trt_embed.runtime.backends import open_engine
from trt_embed.runtime.backends.base import Engine
from trt_embed.runtime.backends.onnxruntime import default_threads
from trt_embed.runtime.postprocess import Vectors, check_dimensions, finish
from trt_embed.runtime.requests import (
    OUTPUTS,
    Inputs,
    PoolingTask,
    Prepared,
    cosine_pairs,
    exclude_leading,
    pair_inputs,
    token_id_inputs,
    token_limit,
)
from trt_embed.runtime.scheduler import BatchKey, Result, Scheduler
from trt_embed.runtime.tokenizer import TextTokenizer, Tokenized, Truncate, pad_batch

log = logging.getLogger("trt_embed")

# Padded tokens per engine call. Small for onnxruntime on CPU, where activations then stay in cache
# (all-MiniLM-L6-v2 on 2 cores: 512 gave 231 texts/s, 2048 gave 202, with half the peak memory); larger for
# OpenVINO's AMX kernels (bf16: 581 texts/s at 2048, 509 at 512); large on GPUs, which need big batches to fill.
DEFAULT_MAX_BATCH_TOKENS = {"onnxruntime-cpu": 512, "openvino-cpu": 2048, "onnxruntime-cuda": 65536, "tensorrt": 65536}
DEFAULT_MAX_BATCH_SIZE = {"onnxruntime-cpu": 128, "openvino-cpu": 128, "onnxruntime-cuda": 512, "tensorrt": 512}
CPU_BACKENDS = ("onnxruntime-cpu", "openvino-cpu")
STREAM_CHUNK = 1024  # inputs tokenized per step of a large `embed` call
INLINE_CHARS = 1024  # async requests up to this many characters (or token ids) are tokenized on the caller's thread


class Runtime:
    """Embeds with an exported artifact. Thread-safe; `embed` and `aembed` share one scheduler, so
    concurrent callers are batched together."""

    def __init__(
        self,
        artifact: Artifact,
        *,
        backend: str = "auto",
        precision: str = "fp32",
        variant: str = "base",
        threads: int | None = None,
        verify: bool = True,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        max_queue: int | None = None,
        workers: int | None = None,
        latency_engine: bool = True,
    ) -> None:
        self.artifact = artifact
        self.manifest: Manifest = artifact.manifest
        self.default_variant = variant
        # On CPU, one single-threaded engine call per core (`workers`) beats one call over all cores for
        # encoders of this size (measured with all-MiniLM-L6-v2); GPUs take one batch at a time.
        cpu_workers = workers or default_threads()
        self._engine_options: dict[str, Any] = {
            "backend": backend,
            "precision": precision,
            "threads": threads if threads is not None else (1 if cpu_workers > 1 else None),
            "verify": verify,
        }
        self._engines: dict[str, Engine] = {}
        self._engine_lock = threading.Lock()
        choice = open_engine(artifact, variant=variant, **self._engine_options)
        self._engines[variant] = choice.engine
        self.backend = choice.backend
        self.backend_reason = choice.reason
        log.info("trt-embed backend %s: %s", self.backend, self.backend_reason)
        info = self.manifest.tokenizer
        self.tokenizer = TextTokenizer(artifact.directory / info.directory, info, self.manifest.max_seq_length)
        batch_size = max_batch_size or DEFAULT_MAX_BATCH_SIZE.get(self.backend, 128)
        profile_max = max((p.max[0] for p in choice.engine.profiles), default=batch_size)
        scheduler_workers = workers or (cpu_workers if self.backend in CPU_BACKENDS else 1)
        # With several single-threaded CPU workers, a second engine over all cores runs any batch that is the
        # only work queued or running: a lone query then takes about half the time. It costs one more copy
        # of the weights (`latency_engine=False` saves it).
        self._alone_engine: Engine | None = None
        if latency_engine and self.backend in CPU_BACKENDS and scheduler_workers > 1 and threads is None:
            options = {**self._engine_options, "backend": self.backend, "threads": None}
            self._alone_engine = open_engine(artifact, variant=variant, **options).engine
        self.scheduler = Scheduler(
            self._run_batch,
            max_batch_tokens=max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS.get(self.backend, 8192),
            max_batch_size=min(batch_size, profile_max),
            max_queue=max_queue,
            fits=self._fits_profiles,
            workers=scheduler_workers,
            run_alone=self._run_alone if self._alone_engine is not None else None,
        )
        self._tokenize_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trt-embed-tokenize")

    @classmethod
    def load(cls, artifact: str | Path, **options: Any) -> Runtime:
        """Open an artifact directory; options as for the constructor (backend, precision, variant, ...)."""
        return cls(Artifact.open(artifact), **options)

    # -- facts -----------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine of the default variant."""
        return self._engines[self.default_variant]

    @property
    def embedding_dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def max_seq_length(self) -> int:
        return self.manifest.max_seq_length

    @property
    def variants(self) -> list[str]:
        return self.artifact.variants

    def engine_for(self, variant: str | None = None) -> Engine:
        """The engine of a variant, loaded on first use."""
        name = variant or self.default_variant
        if name not in self._engines:
            if name not in self.variants:
                raise UnknownModel(f"variant {name!r} is not served; available: {', '.join(self.variants)}")
            with self._engine_lock:
                if name not in self._engines:
                    self._engines[name] = open_engine(self.artifact, variant=name, **self._engine_options).engine
        return self._engines[name]

    @functools.cached_property
    def _chat_template(self) -> tuple[str | None, dict[str, str]]:
        """The tokenizer's chat template and special tokens, read once from tokenizer_config.json."""
        config_path = self.artifact.directory / self.manifest.tokenizer.directory / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: use "default"
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        return template, specials

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """Chat messages as one text, through the model's chat template (an error if it has none)."""
        from trt_embed.runtime.chat import render_chat

        template, specials = self._chat_template
        return render_chat(messages, template, specials)

    def _fits_profiles(self, batch: int, seq: int) -> bool:
        """Whether the engine's shape profiles (if any) take a batch of this shape."""
        profiles = self.engine.profiles
        return not profiles or any(p.fits(batch, seq) for p in profiles)

    @property
    def engines(self) -> list[Engine]:
        """Every loaded engine: one per variant in use, plus the all-cores latency engine if any."""
        extra = [self._alone_engine] if self._alone_engine is not None else []
        return [*self._engines.values(), *extra]

    def health(self) -> bool:
        return all(engine.health() for engine in self.engines)

    # -- request preparation -----------------------------------------------------------------------------

    def resolve_prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        """The prompt text for a request: explicit text, a named prompt, or the model's default."""
        if prompt is not None and prompt_name is not None:
            raise InvalidRequest("give either prompt or prompt_name, not both", "prompt_name")
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.manifest.default_prompt_name
        if name is None:
            return None
        prompts = self.manifest.prompts
        if name not in prompts:
            valid = ", ".join(sorted(prompts)) or "none (this model has no prompts)"
            raise InvalidRequest(f"unknown prompt name {name!r}; valid: {valid}", "prompt_name")
        return prompts[name]

    def tokenize(
        self,
        inputs: Inputs,
        *,
        prompt: str | None = None,
        truncate: Truncate = "end",
        max_tokens: int | None = None,
        add_special_tokens: bool = True,
    ) -> Tokenized:
        """Tokenize texts, or check and truncate token-id lists (which are used as given)."""
        if isinstance(inputs, str):
            raise InvalidRequest("inputs must be a list of strings, not a single string", "input")
        if len(inputs) == 0:
            raise InvalidRequest("inputs are empty: pass at least one text or token list", "input")
        kinds = [isinstance(t, str) for t in inputs]
        if any(kinds) and not all(kinds):
            bad = kinds.index(False)
            raise InvalidRequest(
                f"input[{bad}] is {type(inputs[bad]).__name__}: inputs must be all strings or all token-id lists",
                "input",
            )
        if all(kinds):
            texts = [str(t) for t in inputs]
            return self.tokenizer.encode(
                texts, prompt=prompt, truncate=truncate, max_tokens=max_tokens, add_special_tokens=add_special_tokens
            )
        vocab = self.manifest.vocab_size or self.tokenizer.vocab_size
        return token_id_inputs(inputs, truncate, max_tokens or self.max_seq_length, vocab, self.tokenizer.check_length)

    def prepare(
        self,
        inputs: Inputs,
        *,
        task: PoolingTask = "embed",
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate: Truncate = "end",
        truncate_prompt_tokens: int | None = None,
        add_special_tokens: bool = True,
        model: str | None = None,
    ) -> Prepared:
        """Validate and tokenize one request (CPU work; callers run it off the event loop)."""
        if task not in OUTPUTS:
            raise InvalidRequest(f"pooling task must be one of {', '.join(OUTPUTS)}, got {task!r}", "task")
        variant = model or self.default_variant
        if variant not in self.variants:
            raise UnknownModel(f"variant {variant!r} is not served; available: {', '.join(self.variants)}")
        output = OUTPUTS[task]
        if output not in self.engine.output_names:
            raise InvalidRequest(f"this artifact does not export {output} (task {task!r})", "task")
        text_prompt = self.resolve_prompt(prompt_name, prompt)
        tokens = self.tokenize(
            inputs,
            prompt=text_prompt,
            truncate=truncate,
            max_tokens=token_limit(truncate_prompt_tokens, self.max_seq_length),
            add_special_tokens=add_special_tokens,
        )
        skip = 0
        if text_prompt and not self.manifest.pooling.include_prompt and task == "embed":
            skip = self.tokenizer.prompt_length(text_prompt)
        return Prepared(key=BatchKey(variant=variant, output=output, skip=skip), tokens=tokens)

    def submit(self, prepared: Prepared, *, priority: int = 0) -> Future[Result]:
        """Queue a prepared request; raises `Overloaded` at once when the queue is full."""
        return self.scheduler.submit(prepared.key, prepared.tokens.ids, prepared.tokens.type_ids, priority=priority)

    # -- synchronous API -----------------------------------------------------------------------------------

    def embed(
        self,
        inputs: Inputs,
        *,
        dimensions: int | None = None,
        normalize: bool | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate: Truncate = "end",
        truncate_prompt_tokens: int | None = None,
        model: str | None = None,
        priority: int = 0,
    ) -> Vectors:
        """Embed texts (or token-id lists) into float32 [N, dimensions or embedding_dim], L2-normalized
        unless `normalize=False` (the default follows the model's sentence-transformers config).

        Large inputs stream through in chunks: the next chunk is tokenized while the current one runs."""
        dims = check_dimensions(self.manifest, dimensions)
        if isinstance(inputs, str) or len(inputs) == 0:
            self.tokenize(inputs)  # raises the right error
        options = {
            "prompt_name": prompt_name,
            "prompt": prompt,
            "truncate": truncate,
            "truncate_prompt_tokens": truncate_prompt_tokens,
            "model": model,
        }
        rows: list[Vectors] = []
        pending: collections.deque[Future[Result]] = collections.deque()
        for start in range(0, len(inputs), STREAM_CHUNK):
            prepared = self.prepare(inputs[start : start + STREAM_CHUNK], **options)  # type: ignore[arg-type]
            pending.append(self.submit(prepared, priority=priority))
            if len(pending) > 1:
                rows.extend(pending.popleft().result().rows)
        while pending:
            rows.extend(pending.popleft().result().rows)
        return self.finish_embeddings(np.stack(rows), dimensions=dims, normalize=normalize)

    def embed_stream(
        self, inputs: Iterable[str], *, chunk_size: int = STREAM_CHUNK, **options: Any
    ) -> Iterator[Vectors]:
        """Embed an iterable of any length in chunks; memory stays bounded by the chunk size."""
        chunk: list[str] = []
        for text in inputs:
            chunk.append(text)
            if len(chunk) == chunk_size:
                yield self.embed(chunk, **options)
                chunk = []
        if chunk:
            yield self.embed(chunk, **options)

    def finish_embeddings(self, pooled: Vectors, *, dimensions: int | None, normalize: bool | None) -> Vectors:
        """Matryoshka slice, then normalize (the manifest's default when `normalize` is None)."""
        do_normalize = self.manifest.normalize if normalize is None else normalize
        dims = check_dimensions(self.manifest, dimensions)
        return finish(pooled, dimensions=dims, normalize=do_normalize, transform=self.manifest.matryoshka_transform)

    def quantization_ranges(self, dimensions: int | None, normalized: bool) -> np.ndarray:
        """Calibrated per-dimension [min, max] (shape [2, D]) for int8/uint8 outputs, from the manifest."""
        dims = dimensions or self.embedding_dim
        key = f"{dims}" if normalized else f"{dims}:raw"
        ranges = self.manifest.calibration.get("ranges", {})
        if key not in ranges:
            have = sorted({k.split(":")[0] for k in ranges}, key=int)
            raise InvalidRequest(
                f"int8/uint8 outputs need calibration ranges, which this artifact has for dimensions "
                f"{', '.join(have) or 'none'} only; request one of those or a float/binary encoding",
                "embedding_types",
            )
        return np.asarray(ranges[key], dtype=np.float32)

    def encode(self, inputs: Inputs, *, pooling_task: PoolingTask = "embed", **options: Any) -> Vectors | list[Vectors]:
        """`embed` for pooling_task="embed"; per-token vectors [len_i, H] for "token_embed"."""
        if pooling_task == "embed":
            return self.embed(inputs, **options)
        normalize = options.pop("normalize", False)
        priority = options.pop("priority", 0)
        prepared = self.prepare(inputs, task=pooling_task, **options)
        rows = self.submit(prepared, priority=priority).result().rows
        return [finish(r, dimensions=None, normalize=bool(normalize)) for r in rows]

    def score(self, first: str | Sequence[str], second: str | Sequence[str], **options: Any) -> Vectors:
        """Cosine similarity with vLLM's pairing: 1:1, 1:N (one first, many second) and N:N (pairwise)."""
        left, right = pair_inputs(first, second)
        vectors = self.embed([*left, *right], normalize=True, **options)
        a, b = vectors[: len(left)], vectors[len(left) :]
        return cosine_pairs(a, b)

    # -- async API ---------------------------------------------------------------------------------------

    async def aprepare(self, inputs: Inputs, **options: Any) -> Prepared:
        """`prepare` off the event loop; a small request is prepared in place, where the Rust tokenizer takes
        less time than the hop to a tokenizer thread and back."""
        if not isinstance(inputs, str) and len(inputs) <= 8 and sum(len(t) for t in inputs) <= INLINE_CHARS:
            return self.prepare(inputs, **options)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._tokenize_pool, lambda: self.prepare(inputs, **options))

    async def arun(self, prepared: Prepared, *, priority: int = 0) -> Result:
        return await asyncio.wrap_future(self.submit(prepared, priority=priority))

    async def aembed(
        self,
        inputs: Inputs,
        *,
        dimensions: int | None = None,
        normalize: bool | None = None,
        priority: int = 0,
        **options: Any,
    ) -> Vectors:
        check_dimensions(self.manifest, dimensions)
        result = await self.arun(await self.aprepare(inputs, **options), priority=priority)
        return self.finish_embeddings(np.stack(result.rows), dimensions=dimensions, normalize=normalize)

    async def aencode(
        self, inputs: Inputs, *, pooling_task: PoolingTask = "embed", **options: Any
    ) -> Vectors | list[Vectors]:
        if pooling_task == "embed":
            return await self.aembed(inputs, **options)
        normalize = options.pop("normalize", False)
        priority = options.pop("priority", 0)
        result = await self.arun(await self.aprepare(inputs, task=pooling_task, **options), priority=priority)
        return [finish(r, dimensions=None, normalize=bool(normalize)) for r in result.rows]

    async def ascore(self, first: str | Sequence[str], second: str | Sequence[str], **options: Any) -> Vectors:
        left, right = pair_inputs(first, second)
        vectors = await self.aembed([*left, *right], normalize=True, **options)
        a, b = vectors[: len(left)], vectors[len(left) :]
        return cosine_pairs(a, b)

    # -- engine side ---------------------------------------------------------------------------------------

    def _run_batch(self, key: BatchKey, ids: list[list[int]], type_ids: list[list[int]]) -> list[Vectors]:
        """One engine call (scheduler thread); returns one array per input."""
        return self._run_on(self.engine_for(key.variant), key, ids, type_ids)

    def _run_alone(self, key: BatchKey, ids: list[list[int]], type_ids: list[list[int]]) -> list[Vectors]:
        """A batch that is the only work: on the all-cores engine when it serves this variant."""
        engine = self._alone_engine if key.variant == self.default_variant else None
        return self._run_on(engine or self.engine_for(key.variant), key, ids, type_ids)

    def _run_on(self, engine: Engine, key: BatchKey, ids: list[list[int]], type_ids: list[list[int]]) -> list[Vectors]:
        info = self.manifest.tokenizer
        arrays = pad_batch(ids, type_ids, pad_id=info.pad_token_id, side=info.padding_side)
        inputs = dict(arrays)
        if "pooling_mask" in engine.input_names:
            inputs["pooling_mask"] = exclude_leading(arrays["attention_mask"], key.skip)
        out = engine.infer(inputs, [key.output])[key.output]
        if key.output == "sentence_embedding":
            return list(out)
        width = out.shape[1]
        if info.padding_side == "left":
            return [out[row, width - len(t) :] for row, t in enumerate(ids)]
        return [out[row, : len(t)] for row, t in enumerate(ids)]

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued work, then release engines."""
        self.scheduler.close()
        self._tokenize_pool.shutdown(wait=True)
        for engine in self.engines:
            engine.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

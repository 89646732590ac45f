"""`Runtime`: the facade. `run`/`arun` take an `EmbedRequest`; `embed`, `encode`, `score` (and async twins)
build one and return plain arrays. Everything goes through the same pipeline."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Unpack

from trt_embed.artifact import Artifact
from trt_embed.engines.base import Engine, EngineSpec
from trt_embed.manifest import Manifest
from trt_embed.runtime.batching.engine_pool import EnginePool
from trt_embed.runtime.batching.scheduler import Scheduler
from trt_embed.runtime.calls import dense_of, embed_request, score_request, vectors_of
from trt_embed.runtime.kinds import kind_of
from trt_embed.runtime.options import RuntimeOptions
from trt_embed.runtime.outputs.assemble import observe_batches
from trt_embed.runtime.outputs.by_kind import tasks_of
from trt_embed.runtime.outputs.ranking import Classified, Ranked, check_rerank, classified, classify_request, ranked
from trt_embed.runtime.pipeline import Pipeline
from trt_embed.runtime.routes import Limits, RouteContext, build_routes
from trt_embed.runtime.routes.text import STREAM_CHUNK
from trt_embed.runtime.text.chunking import Chunking
from trt_embed.runtime.text.prepare import Preparer
from trt_embed.runtime.text.tokenizer import TextTokenizer, Tokenized
from trt_embed.runtime.types import (
    ChatOptions,
    EmbedRequest,
    EmbedResult,
    Inputs,
    Messages,
    Observer,
    PoolingTask,
    ScoreRequest,
    ScoreResult,
    TokenizeOptions,
    Truncate,
    Vectors,
)


class Runtime:
    """Embeds with an exported artifact. Thread-safe; sync and async callers share one scheduler, so concurrent
    callers are batched together."""

    def __init__(self, artifact: Artifact, options: RuntimeOptions | None = None, **overrides: Any) -> None:
        options = RuntimeOptions(**overrides) if options is None else options
        self.artifact = artifact
        self.manifest: Manifest = artifact.manifest
        self.options = options
        self.pool = EnginePool(artifact, options)
        self._observers: list[Observer] = []
        scheduler = Scheduler(
            self.pool.run,
            self.pool.spec,
            max_queue=options.max_queue,
            on_batch=observe_batches(self._observers),
            workers=self.pool.workers,
            run_alone=self.pool.run_alone if self.pool.alone is not None else None,
            engine_timeout=options.engine_timeout,
            spread=self.pool.spec.device == "cpu",
        )
        chunking = Chunking(options.chunked_processing, options.max_embed_len)
        self.preparer = Preparer(artifact.directory, self.manifest, chunking)
        self.limits = Limits.of(options, self.manifest.max_seq_length)
        context = RouteContext(
            artifact.directory, self.manifest, self.preparer, scheduler, options, self.limits, self.pool.images
        )
        routes = build_routes(context)
        self.pool.routes = {route.name: route for route in routes}
        self.pipeline = Pipeline(
            self.manifest,
            self.preparer,
            scheduler,
            routes,
            variants=self.pool.variants,
            default_variant=options.variant,
            outputs=self.pool.engine.output_names,
            observers=self._observers,
        )

    @classmethod
    def load(cls, artifact: str | Path, options: RuntimeOptions | None = None, **overrides: Any) -> Runtime:
        """Open an artifact directory; options as `RuntimeOptions` or its fields as keywords."""
        options = RuntimeOptions(**overrides) if options is None else options
        return cls(Artifact.open(artifact, verify=options.verify), options)

    # -- facts ------------------------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.pool.backend

    @property
    def backend_reason(self) -> str:
        return self.pool.reason

    @property
    def spec(self) -> EngineSpec:
        return self.pool.spec

    @property
    def engine(self) -> Engine:
        """The engine of the default variant."""
        return self.pool.engine

    def engine_for(self, variant: str | None = None) -> Engine:
        return self.pool.engine_for(variant)

    @property
    def engines(self) -> list[Engine]:
        return self.pool.engines

    @property
    def scheduler(self) -> Scheduler:
        return self.pipeline.scheduler

    @property
    def tokenizer(self) -> TextTokenizer:
        return self.preparer.tokenizer

    @property
    def default_variant(self) -> str:
        return self.options.variant

    @property
    def variants(self) -> list[str]:
        return self.pool.variants

    @property
    def embedding_dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def image_tokens(self) -> int | None:
        """One image's cost in tokens; None: text only; 0: a VLM (image tokens vary, counted among input tokens)."""
        return int(self.manifest.vision["image_tokens"]) if self.manifest.vision else (0 if self.manifest.vlm else None)

    @property
    def kind(self) -> str:
        """Which outputs the model has: "dense", "splade" (sparse), "bge_m3" (dense, sparse and ColBERT) or
        "multi_vector" (ColBERT-shaped token vectors)."""
        return self.manifest.kind

    @property
    def tasks(self) -> tuple[str, ...]:
        """The pooling tasks this model answers (a dense encoder: embed, token_embed; sparse kinds add theirs)."""
        return tuple(tasks_of(self.manifest.kind))

    @property
    def has_dense(self) -> bool:
        """Whether the model makes a dense sentence embedding (a SPLADE model's `embed` is its vocabulary vector)."""
        return kind_of(self.manifest.kind).dense

    @property
    def max_seq_length(self) -> int:
        return self.manifest.max_seq_length

    @property
    def max_input_chars(self) -> int:
        """The longest text (in characters) a request may carry; longer ones are refused before tokenizing."""
        return self.limits.max_input_chars

    @property
    def queue_size(self) -> int:
        return self.scheduler.queue_size

    def health(self) -> bool:
        """Engines open, scheduler workers alive, and no engine call running past its timeout."""
        return self.pool.health() and self.scheduler.healthy()

    def add_observer(self, observer: Observer) -> None:
        """Metrics hook: `observer.batch(...)` after each engine batch, `observer.request(timing)` per request."""
        self._observers.append(observer)

    def variant_for_prompt(self, prompt_name: str | None) -> str | None:
        """The variant whose task prompt is `prompt_name` (jina-embeddings-v3: one merged LoRA per task)."""
        for variant, record in self.manifest.lora_adapters.items():
            if prompt_name is not None and record.get("prompt_name") == prompt_name and variant in self.variants:
                return variant
        return None

    # -- preparation helpers ----------------------------------------------------------------------------------

    def tokenize(self, inputs: Inputs, **options: Unpack[TokenizeOptions]) -> Tokenized:
        """Tokenize texts, or check and truncate token-id lists, as an embed request would (keywords: prompt,
        truncate, max_tokens, add_special_tokens)."""
        return self.preparer.tokenize(inputs, **options)

    def resolve_prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        return self.preparer.resolve_prompt(prompt_name, prompt)

    def render_chat(self, messages: Messages, options: ChatOptions | None = None) -> str:
        return self.preparer.render_chat(messages, options)

    @property
    def tokenizer_config(self) -> dict[str, Any]:
        """The artifact's tokenizer_config.json."""
        return self.preparer.tokenizer_config

    # -- requests ---------------------------------------------------------------------------------------------

    def run(self, request: EmbedRequest) -> EmbedResult:
        """Validate, prepare, batch, post-process and encode one request (blocking)."""
        return self.pipeline.run(request)

    async def arun(self, request: EmbedRequest) -> EmbedResult:
        return await self.pipeline.arun(request)

    def run_score(self, request: ScoreRequest) -> ScoreResult:
        return self.pipeline.score(request)

    async def arun_score(self, request: ScoreRequest) -> ScoreResult:
        return await self.pipeline.ascore(request)

    def embed(
        self,
        inputs: Inputs | None = None,
        *,
        images: Sequence[Any] | None = None,
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
        unless `normalize=False` (the default follows the model's sentence-transformers config). CLIP/SigLIP and
        vision-language models: `images` (paths, bytes, Pillow images, NumPy arrays, data: URIs), or images mixed
        with texts in `inputs` (VLMs also take `Interleaved` inputs: a text and its images as one input)."""
        request = EmbedRequest(
            inputs=inputs,
            images=images,
            dimensions=dimensions,
            normalize=normalize,
            prompt_name=prompt_name,
            prompt=prompt,
            truncate=truncate,
            truncate_prompt_tokens=truncate_prompt_tokens,
            priority=priority,
            variant=model,
        )
        return dense_of(self.run(request))

    async def aembed(self, inputs: Inputs | None = None, **options: Any) -> Vectors:
        """`embed` from the event loop; the same keyword options."""
        return dense_of(await self.arun(embed_request(inputs, "embed", options)))

    def encode(self, inputs: Inputs, *, pooling_task: PoolingTask = "embed", **options: Any) -> Vectors | list[Vectors]:
        """`embed` for pooling_task="embed"; per-token vectors [len_i, H] for "token_embed"."""
        return vectors_of(self.run(embed_request(inputs, pooling_task, options)))

    async def aencode(
        self, inputs: Inputs, *, pooling_task: PoolingTask = "embed", **options: Any
    ) -> Vectors | list[Vectors]:
        return vectors_of(await self.arun(embed_request(inputs, pooling_task, options)))

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

    def score(self, first: str | Sequence[str], second: str | Sequence[str], **options: Any) -> Vectors:
        """Cosine similarity with vLLM's pairing: 1:1, 1:N (one first, many second) and N:N (pairwise)."""
        return self.run_score(score_request(first, second, options)).scores

    async def ascore(self, first: str | Sequence[str], second: str | Sequence[str], **options: Any) -> Vectors:
        return (await self.arun_score(score_request(first, second, options))).scores

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None, **options: Any) -> list[Ranked]:
        """The documents by relevance to `query`, best first (`top_n` of them; None: all): a cross-encoder's
        score of each (query, document) pair (sentence-transformers' CrossEncoder.rank), an embedder's cosine.
        Each `Ranked` holds the document's index in `documents` and its score."""
        checked = check_rerank(query, documents, top_n)
        return ranked(self.score(query, checked, **options), top_n)

    async def arerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None, **options: Any
    ) -> list[Ranked]:
        checked = check_rerank(query, documents, top_n)
        return ranked(await self.ascore(query, checked, **options), top_n)

    def classify(self, texts: Sequence[str], *, model: str | None = None, priority: int = 0) -> list[Classified]:
        """A sequence classifier's label and class probabilities for each text (softmax, or sigmoid per label for
        multi-label models, as the model's config says); other models refuse (task classify, InvalidRequest)."""
        return classified(self.manifest.head_config, self.run(classify_request(texts, model, priority)))

    async def aclassify(self, texts: Sequence[str], *, model: str | None = None, priority: int = 0) -> list[Classified]:
        return classified(self.manifest.head_config, await self.arun(classify_request(texts, model, priority)))

    # -- lifecycle --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued work, then release engines."""
        self.pipeline.close()
        self.pool.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

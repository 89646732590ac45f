"""The reference's offline pooling API on `Runtime`: switch by changing one import.

    from trt_embed.llm import LLM, PoolingParams      # was: from vllm import LLM, PoolingParams

`LLM(model=ARTIFACT_OR_MODEL)` opens an artifact (or exports a model directory once, into the cache);
`embed`, `encode(..., pooling_task=...)` and `score` return outputs shaped as the reference's:
`output.outputs.embedding`, `output.outputs.data`, `output.outputs.score`, `output.prompt_token_ids`.
Vectors are NumPy arrays where the reference hands torch tensors (`.data`), and lists of floats where it does
(`.embedding`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from trt_embed.errors import InvalidRequest
from trt_embed.runtime import EmbedRequest, Runtime, RuntimeOptions, ScoreRequest, Vectors
from trt_embed.runtime.types import Truncate

log = logging.getLogger("trt_embed.llm")
T = TypeVar("T")
# Engine arguments of the reference that tune its GPU engine: accepted and ignored here (each logged once).
ENGINE_ONLY = {
    "runner",
    "convert",
    "task",
    "enforce_eager",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "seed",
    "dtype",
    "max_num_seqs",
    "trust_remote_code",
    "max_model_len",
    "tokenizer",
}


@dataclasses.dataclass(frozen=True)
class PoolingParams:
    """Per-request pooling options: Matryoshka `dimensions`, `use_activation` (False: unnormalized vectors),
    `truncate_prompt_tokens` (-1: the model's limit) and `truncation_side` ("left" keeps the last tokens)."""

    dimensions: int | None = None
    use_activation: bool | None = None
    truncate_prompt_tokens: int | None = None
    truncation_side: str | None = None


@dataclasses.dataclass
class EmbeddingOutput:
    embedding: list[float]

    @property
    def hidden_size(self) -> int:
        return len(self.embedding)


@dataclasses.dataclass
class PoolingOutput:
    data: Vectors  # [D] for embed, [tokens, H] for token_embed


@dataclasses.dataclass
class ScoringOutput:
    score: float


@dataclasses.dataclass
class PoolingRequestOutput(Generic[T]):
    request_id: str
    outputs: T
    prompt_token_ids: list[int]
    finished: bool = True


EmbeddingRequestOutput = PoolingRequestOutput[EmbeddingOutput]
ScoringRequestOutput = PoolingRequestOutput[ScoringOutput]


def _prompts(prompts: Any) -> list[str] | list[list[int]]:
    """The reference's prompt forms: a string, strings, {"prompt": ...} or {"prompt_token_ids": [...]} dicts."""
    items = [prompts] if isinstance(prompts, str | Mapping) else list(prompts)
    out: list[Any] = []
    for n, item in enumerate(items):
        if isinstance(item, Mapping):
            if "prompt_token_ids" in item:
                item = list(item["prompt_token_ids"])
            elif "prompt" in item:
                item = item["prompt"]
            else:
                raise InvalidRequest(f"prompts[{n}] needs `prompt` or `prompt_token_ids`", "prompts")
        out.append(item)
    return out


class LLM:
    """An embedding model run offline through trt-embed's runtime, with the reference's offline API."""

    def __init__(self, model: str | None = None, *, pooler_config: Any = None, **kwargs: Any) -> None:
        from trt_embed.defaults import artifact_for

        options = {k: v for k, v in kwargs.items() if k in {f.name for f in dataclasses.fields(RuntimeOptions)}}
        unknown = set(kwargs) - set(options) - ENGINE_ONLY
        if unknown:
            raise TypeError(f"LLM() got unexpected arguments: {', '.join(sorted(unknown))}")
        for name in sorted(set(kwargs) & ENGINE_ONLY):
            log.info("LLM(%s=...) tunes the reference's engine; trt-embed ignores it", name)
        chunking = _pooler(pooler_config)
        self.runtime = Runtime.load(artifact_for(model), RuntimeOptions(**{**options, **chunking}))
        self._ids = itertools.count()

    def embed(
        self,
        prompts: Any,
        pooling_params: PoolingParams | None = None,
        *,
        truncate_prompt_tokens: int | None = None,
        use_tqdm: bool = False,
    ) -> list[EmbeddingRequestOutput]:
        """One embedding per prompt (L2-normalized unless `use_activation=False`)."""
        vectors, ids = self._run(prompts, pooling_params, truncate_prompt_tokens, "embed")
        return [self._output(EmbeddingOutput(v.tolist()), t) for v, t in zip(vectors, ids, strict=True)]

    def encode(
        self,
        prompts: Any,
        pooling_params: PoolingParams | None = None,
        *,
        pooling_task: str = "embed",
        truncate_prompt_tokens: int | None = None,
        use_tqdm: bool = False,
    ) -> list[PoolingRequestOutput[PoolingOutput]]:
        """Raw pooler outputs: one vector per prompt ("embed") or one per token ("token_embed")."""
        if pooling_task not in ("embed", "token_embed"):
            raise InvalidRequest(
                f"Unsupported task: {pooling_task!r} Supported tasks: ('embed', 'token_embed')", "pooling_task"
            )
        vectors, ids = self._run(prompts, pooling_params, truncate_prompt_tokens, pooling_task)
        return [self._output(PoolingOutput(v), t) for v, t in zip(vectors, ids, strict=True)]

    def score(
        self,
        data_1: str | Sequence[str],
        data_2: str | Sequence[str],
        *,
        truncate_prompt_tokens: int | None = None,
        pooling_params: PoolingParams | None = None,
        use_tqdm: bool = False,
    ) -> list[ScoringRequestOutput]:
        """Cosine similarity with the reference's pairing: 1:1, 1:N and N:N."""
        truncate, limit = _truncation(pooling_params or PoolingParams(), truncate_prompt_tokens)
        request = ScoreRequest(first=data_1, second=data_2, truncate=truncate, truncate_prompt_tokens=limit)
        scores = self.runtime.run_score(request).scores
        lefts = self._token_ids([data_1] if isinstance(data_1, str) else list(data_1), truncate, limit)
        rights = self._token_ids([data_2] if isinstance(data_2, str) else list(data_2), truncate, limit)
        lefts = lefts * len(rights) if len(lefts) == 1 else lefts
        return [self._output(ScoringOutput(float(s)), a + b) for s, a, b in zip(scores, lefts, rights, strict=True)]

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------------------------

    def _run(
        self, prompts: Any, params: PoolingParams | None, truncate_prompt_tokens: int | None, task: str
    ) -> tuple[list[Vectors], list[list[int]]]:
        params = params or PoolingParams()
        inputs = _prompts(prompts)
        truncate, limit = _truncation(params, truncate_prompt_tokens)
        request = EmbedRequest(
            inputs=inputs,
            task=task,  # type: ignore[arg-type]
            dimensions=params.dimensions,
            normalize=params.use_activation,
            truncate=truncate,
            truncate_prompt_tokens=limit,
        )
        output = self.runtime.run(request).output
        vectors = list(getattr(output, "vectors", []))
        return vectors, self._token_ids(inputs, truncate, limit)

    def _token_ids(
        self, inputs: Sequence[Any], truncate: Truncate = "none", limit: int | None = None
    ) -> list[list[int]]:
        """The token ids each prompt was run with (as the reference reports them)."""
        if inputs and not isinstance(inputs[0], str):
            return [list(ids) for ids in inputs]
        max_tokens = None if limit in (None, -1) else limit
        tokens = self.runtime.tokenizer.encode(
            [str(t) for t in inputs],
            truncate=truncate,
            max_tokens=max_tokens,
            check_length=False,
        )
        return tokens.ids

    def _output(self, outputs: T, token_ids: list[int]) -> PoolingRequestOutput[T]:
        return PoolingRequestOutput(str(next(self._ids)), outputs, list(token_ids))


def _truncation(params: PoolingParams, truncate_prompt_tokens: int | None) -> tuple[Truncate, int | None]:
    """As the reference: an over-long prompt is an error unless truncation is asked for (then from the right,
    or from the left with truncation_side="left")."""
    limit = truncate_prompt_tokens if truncate_prompt_tokens is not None else params.truncate_prompt_tokens
    return ("none" if limit is None else "start" if params.truncation_side == "left" else "end"), limit


def _pooler(config: Any) -> dict[str, Any]:
    """The reference's `pooler_config` (a dict or an object): its chunked-processing fields as runtime options."""
    if config is None:
        return {}
    get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
    return {"chunked_processing": bool(get("enable_chunked_processing", False)), "max_embed_len": get("max_embed_len")}


__all__ = [
    "LLM",
    "EmbeddingOutput",
    "EmbeddingRequestOutput",
    "PoolingOutput",
    "PoolingParams",
    "PoolingRequestOutput",
    "ScoringOutput",
    "ScoringRequestOutput",
]

"""What a request means, as types: requests, prepared inputs, results by kind, and the observer hook.

Everything a caller (the Python API, the HTTP server, a Ray actor) can ask for is a field of `EmbedRequest`
or `ScoreRequest`; the pipeline validates all of it before any work is queued.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from trt_embed.errors import InvalidRequest

Vectors = npt.NDArray[np.float32]
TokenIds = Sequence[int]
Inputs = Sequence[str] | Sequence[TokenIds]
Messages = Sequence[Mapping[str, Any]]
PoolingTask = Literal["embed", "token_embed", "sparse", "token_classify", "score", "classify"]
Truncate = Literal["end", "start", "none"]


class TokenizeOptions(TypedDict, total=False):
    """How texts are tokenized: a prompt before each, the side long ones are cut from, a token limit."""

    prompt: str | None
    truncate: Truncate
    max_tokens: int | None
    add_special_tokens: bool


EncodingName = Literal["float", "base64", "binary", "ubinary", "int8", "uint8"]
EmbedDtype = Literal["float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2"]
Endianness = Literal["native", "little", "big"]

POOLING_TASKS: tuple[PoolingTask, ...] = ("embed", "token_embed", "sparse", "token_classify", "score", "classify")
TRUNCATE_MODES: tuple[Truncate, ...] = ("end", "start", "none")
ENCODINGS: tuple[EncodingName, ...] = ("float", "base64", "binary", "ubinary", "int8", "uint8")
EMBED_DTYPES: tuple[EmbedDtype, ...] = ("float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2")
ENDIANNESS: tuple[Endianness, ...] = ("native", "little", "big")
# The graph output each pooling task reads in a dense model (runtime/outputs.py has every model kind's table).
TASK_OUTPUTS: dict[PoolingTask, str] = {
    "embed": "sentence_embedding",
    "token_embed": "token_embeddings",
    "sparse": "sentence_embedding",
    "token_classify": "token_weights",
}


@dataclasses.dataclass(frozen=True)
class ChatOptions:
    """How `messages` become a text. The defaults are the reference's for embedding requests; `/tokenize`
    asks for a generation prompt."""

    add_generation_prompt: bool = False
    continue_final_message: bool = False
    chat_template: str | None = None  # None: the tokenizer's own template
    chat_template_kwargs: Mapping[str, Any] | None = None
    tools: Sequence[Mapping[str, Any]] | None = None

    def check(self) -> None:
        if self.continue_final_message and self.add_generation_prompt:
            raise InvalidRequest(
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                "continue_final_message",
            )


@dataclasses.dataclass(frozen=True)
class EmbedRequest:
    """One embedding request: texts, token-id lists or chat messages, and what to make of them.

    `normalize` None follows the model's config; `encodings` lists the output forms wanted (several at once for
    Cohere's `embedding_types`); `variant` None is the runtime's default variant.
    """

    inputs: Inputs | None = None
    messages: Messages | None = None
    task: PoolingTask = "embed"
    dimensions: int | None = None
    normalize: bool | None = None
    encodings: tuple[EncodingName, ...] = ("float",)
    embed_dtype: EmbedDtype = "float32"
    endianness: Endianness = "little"
    truncate: Truncate = "end"
    truncate_prompt_tokens: int | None = None
    add_special_tokens: bool = True
    prompt_name: str | None = None
    prompt: str | None = None
    priority: int = 0
    variant: str | None = None
    # how `messages` are rendered (generation prompt, template, kwargs)
    chat: ChatOptions = dataclasses.field(default_factory=ChatOptions)
    # two-tower models (CLIP, SigLIP): images to embed (see runtime/images/sources.py for what an image may be);
    # `inputs` may also mix texts and images
    images: Sequence[Any] | None = None
    also: tuple[PoolingTask, ...] = ()  # more outputs from the same engine call (bge-m3: sparse, token_embed)
    top_k: int | None = None  # sparse: keep the k largest weights
    return_tokens: bool = False  # sparse: decode each kept token id
    # cross-encoders (task "score"): (query, document) pairs, each tokenized as one sequence; their logit rows
    pairs: Sequence[tuple[str, str]] | None = None


@dataclasses.dataclass(frozen=True)
class Interleaved:
    """One input made of texts and images in order (a text with its image): vision-language models embed it as
    one input; two-tower models refuse it."""

    parts: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """Similarity of text pairs with vLLM's pairing: 1:1, 1:N (one first, many second) and N:N (pairwise)."""

    first: str | Sequence[Any]  # texts, or (two-tower models) images too
    second: str | Sequence[Any]
    truncate: Truncate = "end"
    truncate_prompt_tokens: int | None = None
    prompt_name: str | None = None
    prompt: str | None = None
    priority: int = 0
    variant: str | None = None
    # Per-side token limits (rerank's max_tokens_per_query / max_tokens_per_doc): each side is truncated to its
    # own limit before embedding; None leaves that side to `truncate`.
    first_max_tokens: int | None = None
    second_max_tokens: int | None = None
    # bge-m3: weights of its dense, sparse and ColBERT scores, combined as sum(w * s) / sum(w); None: the
    # model kind's own score (cosine, sparse dot, MaxSim)
    weights: tuple[float, float, float] | None = None


@dataclasses.dataclass(frozen=True)
class BatchKey:
    """Inputs can share an engine call only when these agree."""

    variant: str
    output: str  # the graph output read ("sentence_embedding", "token_embeddings", ...); several joined by "+"
    skip: int  # leading tokens excluded from pooling (a prompt with include_prompt=False)
    route: str = "text"  # the route whose engine half batches them (`routes/`): "text", "tokens", "image", ...


@dataclasses.dataclass(frozen=True)
class PreparedInput:
    """One input made ready for an engine, modality-neutral: its features and its cost in the engine's unit
    (tokens for text; an image graph would count a fixed cost per image). The scheduler sorts and budgets by
    `cost` only; the batcher reads the features."""

    features: Mapping[str, Any]  # text: "input_ids", "token_type_ids" (int sequences); image: "pixel_values"
    cost: int
    # A token block (`blocks.py`) of many inputs is one queued unit: its rows and its longest row. One input
    # is one row as wide as its cost.
    rows: int = 1
    width: int = 0  # 0: the cost

    @property
    def span(self) -> int:
        """The unit's longest row (what padding widens a batch to)."""
        return self.width or self.cost


def text_input(ids: Sequence[int], type_ids: Sequence[int] | None = None) -> PreparedInput:
    """A tokenized text as a prepared input; it costs one unit per token."""
    types = type_ids if type_ids is not None else [0] * len(ids)
    return PreparedInput({"input_ids": ids, "token_type_ids": types}, cost=len(ids))


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A request after validation and preparation, ready for the scheduler."""

    key: BatchKey
    items: list[PreparedInput]
    counts: list[int] | None = None  # chunked processing: how many consecutive items make up each input

    @property
    def num_tokens(self) -> int:
        return sum(len(item.features.get("input_ids", ())) for item in self.items)


@dataclasses.dataclass
class Timing:
    """Where a request's time went, in seconds."""

    prepare: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    batches: int = 0


@dataclasses.dataclass
class Dense:
    """One vector per input: [N, D]."""

    vectors: Vectors


@dataclasses.dataclass
class TokenVectors:
    """One vector per token per input: a list of [len_i, H]."""

    vectors: list[Vectors]


@dataclasses.dataclass
class Sparse:
    """Token id -> weight per input: `ids` [k_i] int64 and `weights` [k_i] float32, largest weight first;
    `tokens` (the decoded ids) when asked for."""

    ids: list[npt.NDArray[np.int64]]
    weights: list[Vectors]
    tokens: list[list[str]] | None = None


# Multi-vector (ColBERT) results are TokenVectors: one projected vector per token.
Output = Dense | TokenVectors | Sparse
# What an engine call hands back per input: one array, or one per graph output when a request reads several.
Row = Vectors | dict[str, Vectors]


@dataclasses.dataclass
class EmbedResult:
    """The outcome of one `EmbedRequest`: the float output by kind, each requested encoding of it (one item per
    input), the tokens it used and where its time went."""

    output: Output
    encoded: dict[EncodingName, list[Any]]
    num_tokens: int
    timing: Timing
    also: dict[PoolingTask, Output] = dataclasses.field(default_factory=dict)  # the request's `also` outputs
    # each `also` output in the request's encodings (sparse ones as indices/values whatever the encoding)
    also_encoded: dict[PoolingTask, dict[EncodingName, list[Any]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ScoreResult:
    scores: Vectors
    num_tokens: int
    timing: Timing


class Observer(Protocol):
    """Metrics hook: the runtime calls it after each engine batch and each finished request."""

    def batch(self, size: int, tokens: int, seconds: float) -> None: ...

    def request(self, timing: Timing) -> None: ...

"""The lean serving runtime: no torch, no transformers, no exporter imports.

This module is the runtime's public API; the server and integrations import only what is listed here.
"""

from trt_embed.artifact import Artifact
from trt_embed.runtime.images.sources import ImageURL
from trt_embed.runtime.images.two_tower import part_item
from trt_embed.runtime.options import RuntimeOptions
from trt_embed.runtime.outputs.encoding import binary_body
from trt_embed.runtime.outputs.ranking import Classified, Ranked, classified, classify_request
from trt_embed.runtime.runtime import Runtime
from trt_embed.runtime.text.chunking import Chunking
from trt_embed.runtime.text.prepare import RequestTokenizer
from trt_embed.runtime.text.tokenizer import Tokenized
from trt_embed.runtime.types import (
    ENCODINGS,
    ChatOptions,
    Dense,
    EmbedRequest,
    EmbedResult,
    Interleaved,
    Observer,
    ScoreRequest,
    ScoreResult,
    Sparse,
    Timing,
    TokenVectors,
    Truncate,
    Vectors,
)

__all__ = [
    "ENCODINGS",
    "Artifact",
    "ChatOptions",
    "Classified",
    "Chunking",
    "Dense",
    "EmbedRequest",
    "EmbedResult",
    "ImageURL",
    "Interleaved",
    "Observer",
    "Ranked",
    "RequestTokenizer",
    "Runtime",
    "RuntimeOptions",
    "ScoreRequest",
    "ScoreResult",
    "Sparse",
    "Timing",
    "TokenVectors",
    "Tokenized",
    "Truncate",
    "Vectors",
    "binary_body",
    "classified",
    "classify_request",
    "part_item",
]

"""The artifact manifest (`trt_embed.json`): the contract between the exporter and the runtime.

Plain dataclasses and JSON, so the serving path needs nothing beyond the standard library to read it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from trt_embed.errors import ArtifactError

MANIFEST_NAME = "trt_embed.json"
FORMAT_VERSION = 2  # 2: `files` hashes the tokenizer and every other non-engine file the runtime reads


@dataclasses.dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: list[str | int]


@dataclasses.dataclass
class ShapeProfile:
    """One optimization profile: (batch, sequence) at min / opt / max."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def fits(self, batch: int, seq: int) -> bool:
        return self.min[0] <= batch <= self.max[0] and self.min[1] <= seq <= self.max[1]


@dataclasses.dataclass
class EngineEntry:
    """One engine file of the artifact."""

    file: str
    kind: str  # "onnx" | "tensorrt"
    precision: str  # "fp32" | "fp16" | "int8"
    target: str  # "any" (portable ONNX), "cpu", "cuda", "sm_86", ...
    variant: str = "base"  # LoRA variant name; "base" is the model without adapters
    optimized: bool = False  # onnxruntime transformer fusions applied
    inputs: list[TensorSpec] = dataclasses.field(default_factory=list)
    outputs: list[TensorSpec] = dataclasses.field(default_factory=list)
    profiles: list[ShapeProfile] = dataclasses.field(default_factory=list)
    tools: dict[str, str] = dataclasses.field(default_factory=dict)
    quality: dict[str, float] = dataclasses.field(default_factory=dict)
    sha256: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    modality: str = "text"  # the input it embeds: "text" (token ids) or "image" (pixel_values), two-tower models

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


@dataclasses.dataclass
class Pooling:
    mode: str  # cls | mean | max | mean_sqrt_len | weightedmean | last
    include_prompt: bool = True


@dataclasses.dataclass
class TokenizerInfo:
    directory: str = "tokenizer"
    do_lower_case: bool = False
    padding_side: str = "right"
    pad_token_id: int = 0
    add_special_tokens: bool = True
    model_max_length: int | None = None


@dataclasses.dataclass
class Manifest:
    architecture: str
    family: str
    hidden_size: int
    embedding_dim: int
    pooling: Pooling
    max_seq_length: int
    tokenizer: TokenizerInfo
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    normalize: bool = True  # the runtime L2-normalizes by default (after Matryoshka slicing)
    graph_normalized: bool = False  # the graph output is already L2-normalized (our exporter never does this)
    matryoshka_dimensions: list[int] | None = None  # None: not a Matryoshka model
    # applied to the full vector before Matryoshka slicing; "layer_norm": no affine, eps 1e-5 (nomic v1.5)
    matryoshka_transform: str | None = None
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    default_prompt_name: str | None = None
    uses_token_type_ids: bool = False
    vocab_size: int | None = None  # rows of the model's token embedding table (valid token ids)
    dense_layers: int = 0
    lora_adapters: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # which outputs the graph has: "dense" (sentence_embedding, token_embeddings), "splade" (sentence_embedding
    # is [vocab], token_embeddings), "bge_m3" (sentence_embedding, token_weights, colbert_vectors),
    # "multi_vector" (colbert_vectors; its sentence_embedding is no dense embedding)
    kind: str = "dense"
    special_token_ids: list[int] = dataclasses.field(default_factory=list)  # left out of sparse outputs
    # multi_vector: query_length, document_length, expansion {strategy, length, token_id, attend}, skip_ids,
    # skip_tasks (sentence-transformers' MultiVectorEncoder settings)
    head_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
    engines: list[EngineEntry] = dataclasses.field(default_factory=list)
    # every other file the runtime reads (the tokenizer's): path relative to the artifact -> sha256
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    # two-tower (CLIP / SigLIP) models: the image graph's input size and preprocessing recipe, the text padding
    # (see trt_embed/runtime/images.py); None for text-only models
    vision: dict[str, Any] | None = None
    # vision-language models (VLM2Vec, DSE, ...): the vision and decoder graphs, the token embedding table, the image
    # placeholder and the family's preprocessing recipe and prompt templates (see trt_embed/runtime/vlm/families.py);
    # None for other models
    vlm: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"artifact format version {version!r} is not supported by this trt-embed "
                f"(expects {FORMAT_VERSION}); re-export the model with this version of trt-embed"
            )
        try:
            fields = dict(data)
            fields["pooling"] = Pooling(**data["pooling"])
            fields["tokenizer"] = TokenizerInfo(**data["tokenizer"])
            fields["engines"] = [_engine_from_dict(e) for e in data.get("engines", [])]
            fields["files"] = _files_from_dict(data.get("files", {}))
            return cls(**fields)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"manifest is malformed: {exc}; re-export the model") from exc

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise ArtifactError(
                f"{directory} is not a trt-embed artifact: {MANIFEST_NAME} is missing. "
                "Create one with `trt-embed export MODEL -o DIR`."
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path} is not valid JSON ({exc}); re-export the model") from exc
        return cls.from_dict(data)

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_NAME).write_text(self.to_json())


def _engine_from_dict(data: dict[str, Any]) -> EngineEntry:
    fields = dict(data)
    fields["inputs"] = [TensorSpec(**t) for t in data.get("inputs", [])]
    fields["outputs"] = [TensorSpec(**t) for t in data.get("outputs", [])]
    fields["profiles"] = [
        ShapeProfile(min=_pair(p["min"]), opt=_pair(p["opt"]), max=_pair(p["max"])) for p in data.get("profiles", [])
    ]
    return EngineEntry(**fields)


def _files_from_dict(data: Any) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise TypeError("`files` must map relative paths to sha256 strings")
    return dict(data)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _pair(values: list[int]) -> tuple[int, int]:
    batch, seq = values
    return int(batch), int(seq)

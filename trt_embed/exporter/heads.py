"""Sparse and multi-vector output heads, traced into the graph like the pooling head of `EmbeddingGraph`.

`SpladeGraph`: MLM logits -> log(1 + ReLU) (twice for `log1p_relu`) -> max or sum over the unmasked tokens,
exported as `sentence_embedding` [B, vocab] (the runtime sparsifies it) beside `token_embeddings` [B, S, H].

`BgeM3Graph`: bge-m3's three outputs from one encoder pass: `sentence_embedding` (the CLS state), `token_weights`
[B, S] (ReLU of `sparse_linear`) and `colbert_vectors` [B, S, C] (`colbert_linear` of every token state); the
runtime drops CLS, normalizes and aggregates by token id, since those steps depend on each input's length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.source import optional_json

HEADS = ("splade", "bge_m3", "multi_vector")


class _HeadGraph(torch.nn.Module):
    """What every exported graph offers the exporter: `encoder`, `input_names`, `output_names`."""

    output_names: ClassVar[list[str]]

    def __init__(self, encoder: torch.nn.Module, *, uses_token_type_ids: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.uses_token_type_ids = uses_token_type_ids

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", *(["token_type_ids"] if self.uses_token_type_ids else [])]

    def _kwargs(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return dict(zip(self.input_names, inputs, strict=True))


class SpladeGraph(_HeadGraph):
    """SPLADE over an `*ForMaskedLM` model. `drop_special` (cls id, sep id): a leading CLS and a trailing SEP
    are left out of the pooling, as vLLM's SPLADE pooler does; without it every real token counts, as
    sentence-transformers' SpladePooling does."""

    output_names: ClassVar[list[str]] = ["sentence_embedding", "token_embeddings"]

    def __init__(
        self,
        mlm: torch.nn.Module,
        *,
        uses_token_type_ids: bool,
        strategy: str = "max",
        activation: str = "relu",
        drop_special: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(mlm, uses_token_type_ids=uses_token_type_ids)
        self.strategy = strategy
        self.activation = activation
        self.drop_special = drop_special

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        named = self._kwargs(inputs)
        out = self.encoder(**named, output_hidden_states=True)
        mask = named["attention_mask"]
        if self.drop_special is not None:
            cls_id, sep_id = self.drop_special
            ids = named["input_ids"]
            # first position, and the last real token (the next one is padding or the end), by slices and
            # comparisons only: no integer reduction or range, which TensorRT builds poorly or not at all
            none = torch.zeros_like(mask, dtype=torch.bool)
            first = torch.cat([~none[:, :1], none[:, 1:]], dim=1)
            last = (mask == 1) & (torch.cat([mask[:, 1:], mask[:, :1] * 0], dim=1) == 0)
            special = (first & (ids == cls_id)) | (last & (ids == sep_id))
            mask = mask * (~special).to(mask.dtype)
        scores = torch.log1p(torch.relu(out.logits))
        if self.activation == "log1p_relu":
            scores = torch.log1p(scores)
        scores = scores * mask.unsqueeze(-1).to(scores.dtype)  # scores >= 0: masked tokens add nothing to max
        pooled = scores.max(dim=1).values if self.strategy == "max" else scores.sum(dim=1)
        return pooled, out.hidden_states[-1]


class BgeM3Graph(_HeadGraph):
    """bge-m3: dense (CLS), sparse token weights and ColBERT token vectors from one encoder pass."""

    output_names: ClassVar[list[str]] = ["sentence_embedding", "token_weights", "colbert_vectors"]

    def __init__(self, encoder: torch.nn.Module, sparse_linear: torch.nn.Linear, colbert_linear: torch.nn.Linear):
        super().__init__(encoder, uses_token_type_ids=False)
        self.sparse_linear = sparse_linear
        self.colbert_linear = colbert_linear

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(**self._kwargs(inputs)).last_hidden_state
        weights = torch.relu(self.sparse_linear(hidden)).squeeze(-1)
        return hidden[:, 0], weights, self.colbert_linear(hidden)


class MultiVectorGraph(_HeadGraph):
    """sentence-transformers' MultiVectorEncoder (ColBERT-shaped): token states through the token-level Dense
    projection. `expansion_id`: query-expansion tokens the encoder does not attend to (`attend: false`), though
    their own states are computed and scored. `sentence_embedding` (the first token's vector) only keeps the
    graph's interface: such a model has no dense output."""

    output_names: ClassVar[list[str]] = ["sentence_embedding", "colbert_vectors"]

    def __init__(
        self,
        encoder: torch.nn.Module,
        dense: list[torch.nn.Module],
        *,
        uses_token_type_ids: bool,
        expansion_id: int | None,
    ) -> None:
        super().__init__(encoder, uses_token_type_ids=uses_token_type_ids)
        self.dense = torch.nn.Sequential(*dense)
        self.expansion_id = expansion_id

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        named = self._kwargs(inputs)
        if self.expansion_id is not None:
            keep = (named["input_ids"] != self.expansion_id).to(named["attention_mask"].dtype)
            named["attention_mask"] = named["attention_mask"] * keep
        vectors = self.dense(self.encoder(**named).last_hidden_state)
        return vectors[:, 0], vectors


def multi_vector_config(st_config: dict[str, Any], special: dict[str, int], tokenizer_dir: Path) -> dict[str, Any]:
    """What the runtime needs of a multi-vector model: per-task lengths, query expansion (token id, length,
    strategy, attend) and the skiplist as token ids (words that are not one token are dropped, as
    sentence-transformers does)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    skip = [tokenizer.token_to_id(w) for w in st_config.get("skiplist_words") or []]
    expansion = st_config.get("query_expansion")
    if expansion:
        token = expansion.get("token")
        token_id = tokenizer.token_to_id(token) if token else special.get("mask")
        if token_id is None:
            raise ExportError("query expansion needs a token: the tokenizer has no mask token and none is named")
        expansion = {
            "strategy": str(expansion.get("strategy", "fixed")),
            "length": int(expansion["length"]),
            "token_id": int(token_id),
            "attend": bool(expansion.get("attend", False)),
        }
    return {
        "query_length": st_config.get("query_length"),
        "document_length": st_config.get("document_length"),
        "expansion": expansion or None,
        "skip_ids": sorted({int(i) for i in skip if i is not None and i != special.get("unk")}),
        "skip_tasks": list(st_config.get("skiplist_tasks") or ["document"]),
        "normalize": bool(st_config.get("normalize", False)),  # vectors L2-normalized unless asked not to
    }


def linear_from_pt(path: Path) -> torch.nn.Linear:
    """A `torch.nn.Linear` from a state dict saved with `torch.save(linear.state_dict(), path)`, as BAAI saves
    bge-m3's `sparse_linear.pt` and `colbert_linear.pt`."""
    if not path.is_file():
        raise ExportError(f"{path.parent}: bge-m3 needs {path.name} beside the weights; it is missing")
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    if "weight" not in state or state["weight"].dim() != 2:
        raise ExportError(f"{path}: expected a Linear layer's state dict (weight [out, in], bias [out])")
    out_features, in_features = state["weight"].shape
    linear = torch.nn.Linear(int(in_features), int(out_features), bias="bias" in state)
    linear.load_state_dict(state)
    return linear.eval()


def head_graph(
    head: str, model_dir: Path, recipe: dict[str, Any], splade: dict[str, Any] | None, special: dict[str, int]
) -> _HeadGraph:
    """The graph of `head` for the checkpoint in `model_dir`; `special` holds the tokenizer's cls/sep ids."""
    import transformers

    if head == "splade":
        loader = getattr(transformers, str(recipe.get("mlm_loader", "AutoModelForMaskedLM")))
        mlm = loader.from_pretrained(str(model_dir), attn_implementation="eager").eval()
        config = splade or {}
        ends = (special.get("cls", special.get("bos", -1)), special.get("sep", special.get("eos", -1)))
        drop = ends if recipe.get("splade_drop_special") else None
        return SpladeGraph(
            mlm,
            uses_token_type_ids="token_type_ids" in _forward_arguments(mlm),
            strategy=str(config.get("pooling_strategy", "max")),
            activation=str(config.get("activation_function", "relu")),
            drop_special=drop,
        ).eval()
    if head == "bge_m3":
        encoder = transformers.XLMRobertaModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
        sparse = linear_from_pt(model_dir / "sparse_linear.pt")
        colbert = linear_from_pt(model_dir / "colbert_linear.pt")
        return BgeM3Graph(encoder, sparse, colbert).eval()
    raise ExportError(f"unknown output head {head!r}; known: {', '.join(HEADS)}")


def _forward_arguments(module: torch.nn.Module) -> list[str]:
    import inspect

    return list(inspect.signature(module.forward).parameters)


def special_token_ids(tokenizer_dir: Path) -> dict[str, int]:
    """The ids of the tokenizer's special tokens by role (cls, sep, bos, eos, pad, unk, mask), from the artifact's
    `tokenizer_config.json` and `tokenizer.json`; roles the tokenizer lacks are left out."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    config = optional_json(tokenizer_dir / "tokenizer_config.json")
    found: dict[str, int] = {}
    for role in ("cls", "sep", "bos", "eos", "pad", "unk", "mask"):
        token = config.get(f"{role}_token")
        token = token.get("content") if isinstance(token, dict) else token
        token_id = tokenizer.token_to_id(token) if isinstance(token, str) else None
        if token_id is not None:
            found[role] = int(token_id)
    return found

"""The torch module that is traced into ONNX: encoder -> pooling head -> Dense layers.

Normalization is deliberately not part of the graph: the runtime normalizes after Matryoshka slicing.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.source import DenseLayer
from trt_embed.poolers.torch_pooling import Pooling

_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "identity": torch.nn.Identity,
    "tanh": torch.nn.Tanh,
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
    "sigmoid": torch.nn.Sigmoid,
}


def dense_from_st(layer: DenseLayer) -> torch.nn.Sequential:
    """Load a sentence-transformers Dense module (linear + activation) from its directory."""
    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    state = _load_state(layer.directory)
    weights = {k.removeprefix("linear."): v for k, v in state.items() if k.startswith("linear.")}
    try:
        linear.load_state_dict(weights)
    except RuntimeError as exc:
        raise ExportError(f"{layer.directory}: Dense weights do not match its config ({exc})") from exc
    return torch.nn.Sequential(linear, _ACTIVATIONS[layer.activation]())


def _load_state(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        state: dict[str, torch.Tensor] = torch.load(
            directory / "pytorch_model.bin", map_location="cpu", weights_only=True
        )
        return state
    raise ExportError(f"{directory}: no Dense weights (model.safetensors or pytorch_model.bin)")


class EmbeddingGraph(torch.nn.Module):
    """Maps token ids to `sentence_embedding` [B, D] (pooled, projected, not normalized) and
    `token_embeddings` [B, S, H].

    `pooling_mask` is a separate input only for models that exclude the prompt from pooling
    (sentence-transformers `include_prompt=False`); otherwise the attention mask is used.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        pooling: str,
        dense: list[torch.nn.Module],
        *,
        uses_token_type_ids: bool,
        separate_pooling_mask: bool,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = Pooling(pooling)
        self.dense = torch.nn.Sequential(*dense)
        self.uses_token_type_ids = uses_token_type_ids
        self.separate_pooling_mask = separate_pooling_mask

    @property
    def input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        if self.uses_token_type_ids:
            names.append("token_type_ids")
        if self.separate_pooling_mask:
            names.append("pooling_mask")
        return names

    output_names: ClassVar[list[str]] = ["sentence_embedding", "token_embeddings"]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        named = dict(zip(self.input_names, inputs, strict=True))
        kwargs = {"input_ids": named["input_ids"], "attention_mask": named["attention_mask"]}
        if self.uses_token_type_ids:
            kwargs["token_type_ids"] = named["token_type_ids"]
        hidden = self.encoder(**kwargs).last_hidden_state
        mask = named.get("pooling_mask", named["attention_mask"])
        pooled = self.dense(self.pooling(hidden, mask))
        return pooled, hidden

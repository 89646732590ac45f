"""What a vision-language model's loader hands the VLM exporter (trt_embed/exporter/vlm.py): the torch modules of
its two graphs and the runtime record. Each VLM model module (qwen2_vl.py, llava_next.py, ...) implements
`VlmLoader`; the zoo row's `loader: "package.module:NAME"` names it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from trt_embed.zoo import ZooEntry


@dataclasses.dataclass
class VlmParts:
    """What a loader's `load` returns."""

    vision: torch.nn.Module  # forward(*vision_inputs) -> image_features [N, H] (, deepstack_features [L, N, H])
    vision_inputs: list[str]  # in forward order: the keys of the runtime processor's `vision_feeds`
    vision_axes: dict[str, dict[int, str]]  # the dynamic axes of each vision input
    decoder: torch.nn.Module  # forward(inputs_embeds, attention_mask, position_ids[, deepstack_embeds]) -> [B, S, H]
    embeddings: torch.Tensor  # [V, H], the token embedding table
    # the manifest `vlm` fields the runtime reads: family, processor (the recipe), image_token_id,
    # image_placeholder, templates, suffix, position_rows (3 for multimodal RoPE), deepstack_layers
    record: dict[str, Any]
    pooling: str  # "last" | "mean", pooled in the decoder graph over the attention mask
    max_positions: int
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # extra arrays for the processor
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)  # instructions for `prompt_name`
    matryoshka: list[int] | None = None  # None: not Matryoshka; []: any dimension


class VlmLoader(Protocol):
    """One vision-language model's export-side code (the runtime side: a VisionProcessor in runtime/)."""

    def parameters(self, model_dir: Path, config: dict[str, Any]) -> int:
        """The parameter count, without reading weights (the memory check runs before any weight is read)."""
        ...

    def load(self, model_dir: Path, entry: ZooEntry, config: dict[str, Any]) -> VlmParts: ...


def meta_parameters(model_class: Any, config: Any) -> int:
    """Parameters of `model_class(config)`, built on the meta device (no memory, no weights read)."""
    with torch.device("meta"):
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())

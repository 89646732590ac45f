"""Qwen3-VL as an embedder (Qwen/Qwen3-VL-Embedding-2B): the export half of the `qwen3_vl` VLM family.

What differs from Qwen2-VL (exporter/models/qwen2_vl.py): the vision tower adds a learned position table resampled
to each image's grid (the runtime gives each patch its 4 table rows and bilinear weights), and its deepstack mergers
turn the states of some vision layers into `deepstack_features` [L, N, H] that the decoder adds to the image
positions after each of its first L layers (the runtime scatters them into `deepstack_embeds` [L, B, S, H], zero
elsewhere). The text model's multimodal RoPE is interleaved (inside its rotary module; the positions are the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.models.qwen2_vl import PATCH_AXES, Qwen2VLFamily, Qwen2VLVision
from trt_embed.exporter.models.vlm_parts import VlmParts
from trt_embed.zoo import ZooEntry

AXES = {**PATCH_AXES, "pos_indices": {0: "patches"}, "pos_weights": {0: "patches"}}


class Qwen3VLVision(Qwen2VLVision):
    """(pixel_values, vision_position_ids, image_index, pos_indices, pos_weights) -> (merged features [N, H],
    deepstack features [L, N, H])."""

    def forward(  # type: ignore[override]
        self,
        pixel_values: torch.Tensor,
        vision_position_ids: torch.Tensor,
        image_index: torch.Tensor,
        pos_indices: torch.Tensor,
        pos_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.visual
        hidden = visual.patch_embed(pixel_values)
        hidden = hidden + (visual.pos_embed(pos_indices) * pos_weights[:, :, None]).sum(1).to(hidden.dtype)
        cos, sin = visual.rotary_pos_emb(hidden, vision_position_ids)
        mask = torch.where(image_index[:, None] == image_index[None, :], 0.0, torch.finfo(hidden.dtype).min)[None]
        deepstack = []
        for layer, block in enumerate(visual.blocks):
            hidden = hidden + self.attention(block, block.norm1(hidden), cos, sin, mask)
            hidden = hidden + block.mlp(block.norm2(hidden))
            if layer in visual.deepstack_visual_indexes:
                merger = visual.deepstack_merger_list[list(visual.deepstack_visual_indexes).index(layer)]
                deepstack.append(merger(hidden))
        return visual.merger(hidden), torch.stack(deepstack)


class Qwen3VLDecoder(torch.nn.Module):
    """(inputs_embeds, attention_mask, position_ids [3, B, S], deepstack_embeds [L, B, S, H]) -> [B, S, H]: the
    text model's layers, each of the first L followed by its deepstack addition."""

    def __init__(self, language_model: Any) -> None:
        super().__init__()
        from trt_embed.exporter.models.decoder import DecoderEncoder

        self.text = DecoderEncoder(language_model, bidirectional=False)
        if set(self.text.windows) != {"full_attention"}:
            raise ExportError("Qwen3-VL with sliding-window layers is not supported")

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        deepstack_embeds: torch.Tensor,
    ) -> torch.Tensor:
        model = self.text.model
        mask = self.text.masks(attention_mask, inputs_embeds.dtype)
        hidden = inputs_embeds
        rotary = model.rotary_emb(hidden, position_ids)
        for layer, block in enumerate(model.layers):
            hidden = block(hidden, position_embeddings=rotary, attention_mask=mask)
            if layer < deepstack_embeds.shape[0]:
                hidden = hidden + deepstack_embeds[layer]
        normed: torch.Tensor = model.norm(hidden)
        return normed


class Qwen3VLFamily(Qwen2VLFamily):
    """`loader` of the Qwen3VLForConditionalGeneration zoo row."""

    model_class = "Qwen3VLForConditionalGeneration"

    def load(self, model_dir: Path, entry: ZooEntry, config: dict[str, Any]) -> VlmParts:
        parts = super().load(model_dir, entry, config)
        visual = parts.vision.visual  # type: ignore[union-attr]
        parts.vision = Qwen3VLVision(visual).eval()
        parts.vision_inputs = list(AXES)
        parts.vision_axes = AXES
        parts.decoder = Qwen3VLDecoder(parts.decoder.text.model).eval()  # type: ignore[union-attr]
        layers = len(visual.deepstack_visual_indexes)
        text_layers = len(parts.decoder.text.model.layers)  # type: ignore[union-attr]
        if layers > text_layers:
            raise ExportError(f"{model_dir}: {layers} deepstack layers for a decoder of {text_layers} layers")
        parts.record.update(
            family="qwen3_vl",
            deepstack_layers=layers,
            processor={**parts.record["processor"], "position_grid": int(visual.num_grid_per_side)},
        )
        return parts


FAMILY = Qwen3VLFamily()

"""Qwen2-VL as an embedder (MrLight/dse-qwen2-2b-mrl-v1): the export half of the `qwen2_vl` VLM family.

The vision graph runs transformers' vision tower weights with the data-dependent parts given as inputs: each
patch's rotary (row, column) and its image index, so attention stays inside each image through a mask instead of
a Python loop over images (one graph for any number of images of any sizes). The decoder graph is the text model
with a prepared causal mask and the 3-row multimodal RoPE positions the runtime computes (runtime/qwen_vl.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.models.decoder import DecoderEncoder
from trt_embed.exporter.models.layers import optional_json
from trt_embed.exporter.models.vlm_parts import VlmParts, meta_parameters
from trt_embed.runtime.vlm.qwen_vl import recipe_from_config
from trt_embed.zoo import ZooEntry

PATCH_AXES = {
    "pixel_values": {0: "patches"},
    "vision_position_ids": {0: "patches"},
    "image_index": {0: "patches"},
}


class Qwen2VLVision(torch.nn.Module):
    """(pixel_values [P, C*T*p*p], vision_position_ids [P, 2], image_index [P]) -> merged features [P/m^2, H]."""

    def __init__(self, visual: Any) -> None:
        super().__init__()
        self.visual = visual

    def attention(
        self, block: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

        attn = block.attn
        patches = hidden.shape[0]
        q, k, v = attn.qkv(hidden).reshape(patches, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [heads, P, d]
        weights = torch.softmax(q @ k.transpose(1, 2) * attn.scaling + mask, dim=-1, dtype=torch.float32)
        out = (weights.to(v.dtype) @ v).transpose(0, 1).reshape(patches, -1)
        return attn.proj(out)

    def forward(
        self, pixel_values: torch.Tensor, vision_position_ids: torch.Tensor, image_index: torch.Tensor
    ) -> torch.Tensor:
        visual = self.visual
        hidden = visual.patch_embed(pixel_values)
        cos, sin = visual.rotary_pos_emb(hidden, vision_position_ids)
        same = image_index[:, None] == image_index[None, :]
        mask = torch.where(same, 0.0, torch.finfo(hidden.dtype).min)[None]
        for block in visual.blocks:
            hidden = hidden + self.attention(block, block.norm1(hidden), cos, sin, mask)
            hidden = hidden + block.mlp(block.norm2(hidden))
        merged: torch.Tensor = visual.merger(hidden)
        return merged


class Qwen2VLDecoder(torch.nn.Module):
    """(inputs_embeds, attention_mask, position_ids [3, B, S]) -> last hidden states [B, S, H]."""

    def __init__(self, language_model: Any) -> None:
        super().__init__()
        self.text = DecoderEncoder(language_model, bidirectional=False)

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        model = self.text.model
        masks = self.text.masks(attention_mask, inputs_embeds.dtype)
        if not isinstance(masks, dict):
            masks = {"full_attention": masks}
        out = model(inputs_embeds=inputs_embeds, attention_mask=masks, position_ids=position_ids, use_cache=False)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


def token_of(model_dir: Path, token_id: int) -> str:
    """A special token's text, from the checkpoint's tokenizer."""
    from tokenizers import Tokenizer

    token = Tokenizer.from_file(str(model_dir / "tokenizer.json")).id_to_token(token_id)
    if token is None:
        raise ExportError(f"{model_dir}: the tokenizer has no token with id {token_id}, which config.json names")
    return str(token)


class Qwen2VLFamily:
    """`loader` of the Qwen2VLForConditionalGeneration zoo row."""

    model_class = "Qwen2VLForConditionalGeneration"

    def parameters(self, model_dir: Path, config: dict[str, Any]) -> int:
        import transformers

        try:
            loaded = transformers.AutoConfig.from_pretrained(str(model_dir))
        except Exception as exc:
            raise ExportError(
                f"{model_dir}: config.json cannot be read as a {self.model_class} config ({exc})"
            ) from exc
        return meta_parameters(getattr(transformers, self.model_class), loaded)

    def load_model(self, model_dir: Path) -> Any:
        import transformers

        try:
            return (
                getattr(transformers, self.model_class)
                .from_pretrained(str(model_dir), attn_implementation="eager", dtype=torch.float32)
                .eval()
            )
        except Exception as exc:
            raise ExportError(f"{model_dir}: {self.model_class} cannot load this checkpoint ({exc})") from exc

    def load(self, model_dir: Path, entry: ZooEntry, config: dict[str, Any]) -> VlmParts:
        from trt_embed.exporter.models.recipe import recipe_matryoshka

        model = self.load_model(model_dir)
        inner = model.model
        cfg = model.config
        text = cfg.text_config
        placeholder = "".join(
            token_of(model_dir, int(i))
            for i in (cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id)
        )
        recipe = recipe_from_config(optional_json(model_dir / "preprocessor_config.json"))
        if (
            recipe["patch_size"] != cfg.vision_config.patch_size
            or recipe["merge_size"] != cfg.vision_config.spatial_merge_size
        ):
            raise ExportError(
                f"{model_dir}: preprocessor_config.json's patch/merge sizes do not match the vision tower's"
            )
        record = {
            "family": "qwen2_vl",
            "processor": recipe,
            "image_token_id": int(cfg.image_token_id),
            "image_placeholder": placeholder,
            "templates": dict(entry.recipe.get("templates") or {}),
            "suffix": str(entry.recipe.get("suffix") or ""),
            "position_rows": 3,
        }
        embeddings = inner.get_input_embeddings().weight
        return VlmParts(
            vision=Qwen2VLVision(inner.visual).eval(),
            vision_inputs=list(PATCH_AXES),
            vision_axes=PATCH_AXES,
            decoder=Qwen2VLDecoder(inner.language_model).eval(),
            embeddings=embeddings,
            record=record,
            pooling=entry.default_pooling,
            max_positions=int(text.max_position_embeddings),
            prompts=dict(entry.recipe.get("prompts") or {}),
            matryoshka=recipe_matryoshka(entry, int(embeddings.shape[1])),
        )


FAMILY = Qwen2VLFamily()

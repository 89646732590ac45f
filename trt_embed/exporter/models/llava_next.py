"""LLaVA-NeXT as an embedder (royokong/e5-v, on llama3-llava-next-8b): the export half of the `llava_next` VLM family.

Vision graph: anyres crops [N, 3, S, S] (each image's base crop, then its grid crops; runtime/vlm/llava_next.py)
through transformers' CLIP tower up to `vision_feature_layer` (the layers after it are not run; a list of layers is
concatenated as the model does), CLS dropped ("default" strategy), through `multi_modal_projector`: a table of
N * grid^2 projected features plus `image_newline` as its last row. The model's pack_image_features (base features,
the crops' unpadded feature map with a newline after each row) is a gather over that table by `token_index`, which
the runtime computes: projection is per feature, so gathering after it equals the model's packing.
Decoder graph: the config's text model (Llama for e5-v, Mistral or others for other LLaVA-NeXT checkpoints) on
`inputs_embeds`, causal, positions 0..n-1 from the runtime; pooling from the zoo row (e5-v: the last token).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.models.decoder import EmbedsDecoder
from trt_embed.exporter.models.layers import optional_json
from trt_embed.exporter.models.qwen2_vl import Qwen2VLFamily, token_of
from trt_embed.exporter.models.vlm_parts import VlmParts
from trt_embed.runtime.vlm.llava_next import recipe_from_configs
from trt_embed.zoo import ZooEntry

AXES = {"pixel_values": {0: "crops"}, "token_index": {0: "image_tokens"}}


class LlavaNextVision(torch.nn.Module):
    """(pixel_values [N, 3, S, S], token_index [T]) -> image_features [T, H] (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        config = model.config
        tower = getattr(model.vision_tower, "vision_model", model.vision_tower)  # transformers 4.x nests it
        layers = len(tower.encoder.layers)
        chosen = config.vision_feature_layer
        chosen = [chosen] if isinstance(chosen, int) else list(chosen)
        self.chosen = [c % (layers + 1) for c in chosen]  # indices into (embeddings, layer 1, ..., layer L)
        self.embeddings = tower.embeddings
        self.pre_layrnorm = tower.pre_layrnorm
        self.layers = tower.encoder.layers[: max(self.chosen)]
        self.projector = model.multi_modal_projector
        self.image_newline = model.image_newline

    def forward(self, pixel_values: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
        hidden = self.pre_layrnorm(self.embeddings(pixel_values))
        states = [hidden]
        for layer in self.layers:
            hidden = layer(hidden, None)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            states.append(hidden)
        selected = torch.cat([states[i] for i in self.chosen], dim=-1)[:, 1:]  # "default": CLS dropped
        projected = self.projector(selected)
        table = torch.cat([projected.reshape(-1, projected.shape[-1]), self.image_newline[None].to(projected)])
        return table[token_index]


def check_config(model_dir: Path, config: Any, recipe: dict[str, Any]) -> None:
    """What the anyres layout assumes, checked against the checkpoint (transformers assumes it too)."""
    vision = config.vision_config
    problems = []
    if vision.model_type != "clip_vision_model":
        problems.append(f"vision tower {vision.model_type!r} (only CLIP is supported)")
    if config.vision_feature_select_strategy != "default":
        problems.append(f"vision_feature_select_strategy {config.vision_feature_select_strategy!r} (only 'default')")
    if recipe["crop"] != vision.image_size:
        problems.append(f"crop size {recipe['crop']} != the vision tower's image size {vision.image_size}")
    if [list(p) for p in config.image_grid_pinpoints] != recipe["pinpoints"]:
        problems.append("image_grid_pinpoints differ between config.json and preprocessor_config.json")
    if any(h % recipe["crop"] or w % recipe["crop"] for h, w in recipe["pinpoints"]):
        problems.append(f"image_grid_pinpoints that are not multiples of the crop size {recipe['crop']}")
    if problems:
        raise ExportError(f"{model_dir}: this LLaVA-NeXT checkpoint cannot be exported: {'; '.join(problems)}")


class LlavaNextFamily(Qwen2VLFamily):
    """`loader` of the LlavaNextForConditionalGeneration zoo row (parameters and loading: Qwen2VLFamily's)."""

    model_class = "LlavaNextForConditionalGeneration"

    def load(self, model_dir: Path, entry: ZooEntry, config: dict[str, Any]) -> VlmParts:
        model = self.load_model(model_dir)
        inner, cfg = model.model, model.config
        recipe = recipe_from_configs(config, optional_json(model_dir / "preprocessor_config.json"))
        check_config(model_dir, cfg, recipe)
        record = {
            "family": "llava_next",
            "processor": recipe,
            "image_token_id": int(cfg.image_token_id),
            # LLaVA's convention: each image on its own line (the llava-hf chat templates write "<image>\n")
            "image_placeholder": token_of(model_dir, int(cfg.image_token_id)) + "\n",
            "templates": dict(entry.recipe.get("templates") or {}),
            "suffix": str(entry.recipe.get("suffix") or ""),
        }
        return VlmParts(
            vision=LlavaNextVision(inner).eval(),
            vision_inputs=list(AXES),
            vision_axes=AXES,
            decoder=EmbedsDecoder(inner.language_model, bidirectional=False).eval(),
            embeddings=inner.get_input_embeddings().weight,
            record=record,
            pooling=entry.default_pooling,
            max_positions=int(cfg.text_config.max_position_embeddings),
            prompts=dict(entry.recipe.get("prompts") or {}),
        )


FAMILY = LlavaNextFamily()

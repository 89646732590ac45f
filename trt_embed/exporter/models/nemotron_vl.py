"""LlamaNemotronVLModel (nvidia/llama-nemotron-embed-vl-1b-v2 remote code), without the remote code: the export
half of the `nemotron_vl` VLM family.

Vision graph: SigLIP tiles [T, 3, S, S] -> the last hidden state (post-layernorm; `select_layer: -1`) -> InternVL's
v2 pixel shuffle (each 2x2 block of patches into one token of 4C channels, `merge_2x2`) -> `mlp1` (LayerNorm,
Linear, GELU, Linear) -> [T * (S/patch/2)^2, H], the tiles' tokens in tile order (the original splices them in that
order). Decoder graph: transformers' `LlamaModel` with a bidirectional padding mask (LlamaBidirectionalModel),
positions from the runtime. Pooling: the config's `pooling` (`avg`: mean over the mask, `last`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trt_embed.exporter.models.decoder import EmbedsDecoder
from trt_embed.exporter.models.layers import load_exact, load_weights, optional_json, read_config, require
from trt_embed.exporter.models.phi3_v import merge_2x2
from trt_embed.exporter.models.vlm_parts import VlmParts
from trt_embed.runtime.vlm.nemotron_vl import recipe_from_configs
from trt_embed.zoo import ZooEntry

POOLING = {"avg": "mean", "last": "last"}
_NESTED = "vision_model.vision_model."  # transformers 4.x SigLIP names; 5.x saves `vision_model.` flat
_TEXT_KEYS = ("architectures", "model_type", "pooling", "temperature", "auto_map", "_name_or_path")


def configs(config: dict[str, Any]) -> tuple[Any, Any]:
    """(SiglipVisionConfig, LlamaConfig) of the checkpoint's `vision_config` / `llm_config`."""
    from transformers import LlamaConfig, SiglipVisionConfig

    vision = {k: v for k, v in config["vision_config"].items() if k not in ("model_type", "architectures")}
    text = {k: v for k, v in config["llm_config"].items() if k not in _TEXT_KEYS}
    return SiglipVisionConfig(**vision), LlamaConfig(**text)


class NemotronVision(torch.nn.Module):
    """pixel_values [T, 3, S, S] -> image_features [T * tokens_per_tile, H]."""

    def __init__(self, vision_config: Any, hidden: int, ratio: float) -> None:
        super().__init__()
        from transformers import SiglipVisionModel

        vision_config._attn_implementation = "eager"
        vision_config.vision_use_head = False  # the attention-pooling head is not used (its weights are skipped)
        self.vision_model = SiglipVisionModel(vision_config)
        self.grid = int(vision_config.image_size) // int(vision_config.patch_size)
        channels = int(vision_config.hidden_size) * round(1 / ratio) ** 2
        self.mlp1 = torch.nn.Sequential(
            torch.nn.LayerNorm(channels),
            torch.nn.Linear(channels, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, hidden),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        states = self.vision_model(pixel_values=pixel_values).last_hidden_state
        tokens: torch.Tensor = self.mlp1(merge_2x2(states, self.grid))
        return tokens.reshape(-1, tokens.shape[-1])


class NemotronVL(torch.nn.Module):
    """The checkpoint's modules: `vision` (with mlp1) and `language_model`."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        from transformers import LlamaModel

        config = read_config(model_dir)
        require(int(config.get("select_layer", -1)) == -1, model_dir, "only select_layer -1 is supported")
        require(config.get("ps_version", "v2") == "v2", model_dir, "only pixel-shuffle version v2 is supported")
        require(float(config.get("downsample_ratio", 0.5)) == 0.5, model_dir, "only downsample_ratio 0.5 is supported")
        llm_arch = (config["llm_config"].get("architectures") or ["LlamaBidirectionalModel"])[0]
        require(llm_arch == "LlamaBidirectionalModel", model_dir, f"language model {llm_arch} is not supported")
        vision_config, text_config = configs(config)
        text_config._attn_implementation = "eager"
        self.config = config
        self.vision = NemotronVision(vision_config, int(text_config.hidden_size), 0.5)
        self.language_model = LlamaModel(text_config)
        state = {
            "vision.vision_model." + k[len(_NESTED) :] if k.startswith(_NESTED) else _rename(k): v
            for k, v in load_weights(model_dir).items()
        }
        load_exact(self, state, model_dir, ignore=("vision.vision_model.head.", "lm_head."))


def _rename(key: str) -> str:
    if key.startswith(("vision_model.", "mlp1.")):
        return "vision." + key
    return key


class NemotronVLFamily:
    """`loader` of the LlamaNemotronVLModel zoo row."""

    def parameters(self, model_dir: Path, config: dict[str, Any]) -> int:
        from transformers import LlamaModel, SiglipVisionModel

        from trt_embed.exporter.models.vlm_parts import meta_parameters

        vision, text = configs(config)
        return meta_parameters(SiglipVisionModel, vision) + meta_parameters(LlamaModel, text)

    def load(self, model_dir: Path, entry: ZooEntry, config: dict[str, Any]) -> VlmParts:
        model = NemotronVL(model_dir).eval()
        processor = optional_json(model_dir / "processor_config.json")
        recipe = recipe_from_configs(config, processor)
        pooling = str(config.get("pooling") or config["llm_config"].get("pooling") or "avg")
        require(pooling in POOLING, model_dir, f"pooling {pooling!r} is not supported ({', '.join(POOLING)})")
        record = {
            "family": "nemotron_vl",
            "processor": recipe,
            "image_token_id": int(config.get("img_context_token_id", 128258)),
            "image_placeholder": "<img><IMG_CONTEXT></img> ",  # the original: "<img>" + context * n + "</img>"
            "templates": dict(entry.recipe.get("templates") or {}),
            "suffix": "",
        }
        text = model.language_model.config
        return VlmParts(
            vision=model.vision,
            vision_inputs=["pixel_values"],
            vision_axes={"pixel_values": {0: "tiles"}},
            decoder=EmbedsDecoder(model.language_model, bidirectional=True).eval(),
            embeddings=model.language_model.get_input_embeddings().weight,
            record=record,
            pooling=POOLING[pooling],
            max_positions=int(text.max_position_embeddings),
            prompts=dict(entry.recipe.get("prompts") or {}),
        )


FAMILY = NemotronVLFamily()

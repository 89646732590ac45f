"""Phi3VForCausalLM (microsoft/Phi-3(.5)-vision remote code; TIGER-Lab/VLM2Vec-Full), without the remote code.

Two graphs' worth of modules, loading the hub checkpoint's weight names:
- `Phi3VVision`: CLIP crops [N, 3, 336, 336] -> the projected image-token table [N * 144 + 2, H]: per crop the
  CLIP hidden state of layer `layer_idx` (-2), patches only, merged 2x2 into 4C channels, through the projection MLP;
  the last two rows are the projected line separator (`sub_GN`) and global separator (`glb_GN`). Phi-3-V's HD
  layout (sub-crop grid rows each ended by `sub_GN`, then `glb_GN`, then the global image's 12 rows each ended by
  `sub_GN`) is a gather over that table, `trt_embed.runtime.vlm.phi3_v.token_index`: projection is per token, so
  projecting the separators once equals the original's projection of the concatenated sequence.
- `Phi3VText`: transformers' `Phi3Model` layers on `inputs_embeds`, causal, positions from the mask, with the
  checkpoint's LongRoPE ("su") tables: short factors, or long factors when the batch's longest row passes
  `original_max_position_embeddings` (the original decides per batch the same way), both scaled by
  sqrt(1 + ln(max / original) / ln(original)).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from trt_embed.exporter.models.decoder import additive_mask, positions_from_mask
from trt_embed.exporter.models.layers import EncoderOutput, load_exact, load_weights, read_config, require
from trt_embed.zoo import ZooEntry

CROP = 336
_VISION = "model.vision_embed_tokens."
_WORDS = ("model.embed_tokens.weight", "model.vision_embed_tokens.wte.weight")  # either copy of the shared table


def merge_2x2(features: torch.Tensor, side: int) -> torch.Tensor:
    """[N, side*side, C] patch grid -> [N, (side/2)^2, 4C]: each 2x2 block's channels in (row, col) order, the
    layout both Phi-3-V's `reshape_hd_patches_2x2merge` and InternVL's v2 pixel shuffle produce."""
    n, _, c = features.shape
    half = side // 2
    grid = features.reshape(n, half, 2, half, 2, c).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(n, half * half, 4 * c)


def clip_config(state: dict[str, torch.Tensor], keep_layers: int) -> Any:
    """The CLIP tower's config from its weights (the original code hard-codes ViT-L/14-336: 64-wide heads)."""
    from transformers import CLIPVisionConfig

    prefix = _VISION + "img_processor."
    patch = state[prefix + "embeddings.patch_embedding.weight"]
    positions = int(state[prefix + "embeddings.position_embedding.weight"].shape[0])
    hidden, size = int(patch.shape[0]), int(patch.shape[-1])
    grid = math.isqrt(positions - 1)
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=int(state[prefix + "encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=keep_layers,
        num_attention_heads=max(1, hidden // 64),
        image_size=grid * size,
        patch_size=size,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


class Phi3VVision(torch.nn.Module):
    """CLIP crops -> projected image-token table (see the module docstring)."""

    def __init__(self, config: dict[str, Any], state: dict[str, torch.Tensor], where: Path) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        processor = config.get("img_processor") or {}
        embd = config.get("embd_layer") or {}
        require(processor.get("name") == "clip_vision_model", where, "only a CLIP image processor is supported")
        require(processor.get("type_feature", "patch") == "patch", where, "only `type_feature: patch` is supported")
        require(embd.get("use_hd_transform", False), where, "only the HD transform (use_hd_transform) is supported")
        require(embd.get("hd_transform_order", "glb_sub") == "sub_glb", where, "only hd_transform_order sub_glb")
        require(embd.get("projection_cls", "linear") == "mlp", where, "only projection_cls mlp is supported")
        prefix = _VISION + "img_processor.encoder.layers."
        layers = len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
        layer_idx = int(processor.get("layer_idx", -2))
        keep = layers + 1 + layer_idx if layer_idx < 0 else layer_idx
        require(0 < keep <= layers, where, f"img_processor.layer_idx {layer_idx} is outside the {layers} CLIP layers")
        self.image_dim = int(processor.get("image_dim_out", 1024))
        self.clip = CLIPVisionModel(clip_config(state, keep))
        self.grid = CROP // self.clip.config.patch_size
        hidden = int(config["hidden_size"])
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(4 * self.image_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
        )
        self.sub_GN = torch.nn.Parameter(torch.zeros(1, 1, 1, 4 * self.image_dim))
        self.glb_GN = torch.nn.Parameter(torch.zeros(1, 1, 4 * self.image_dim))

    def table(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, 336, 336] (each image's global crop, then its sub-crops) -> [N * 144 + 2, H]."""
        patches = self.clip(pixel_values=pixel_values).last_hidden_state[:, 1:]  # layer `layer_idx`, no CLS
        merged = merge_2x2(patches, self.grid).reshape(-1, 4 * self.image_dim)
        separators = torch.cat([self.sub_GN.reshape(1, -1), self.glb_GN.reshape(1, -1)])
        table: torch.Tensor = self.projection(torch.cat([merged, separators]))
        return table

    def forward(self, pixel_values: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
        """-> image_features [tokens, H]: the table's rows in the HD layout `token_index` gives."""
        return self.table(pixel_values)[token_index]


class LongRopeTables(torch.nn.Module):
    """(cos, sin) for Phi-3's LongRoPE: short or long factors by the batch's largest position."""

    def __init__(self, config: dict[str, Any], head_dim: int) -> None:
        super().__init__()
        scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
        base = float(scaling.get("rope_theta", config.get("rope_theta", 10000.0)))
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        short = scaling.get("short_factor") or [1.0] * (head_dim // 2)
        long = scaling.get("long_factor") or short
        self.register_buffer("short_inv", 1.0 / (torch.tensor(short, dtype=torch.float32) * base**exponents), False)
        self.register_buffer("long_inv", 1.0 / (torch.tensor(long, dtype=torch.float32) * base**exponents), False)
        self.original = int(config.get("original_max_position_embeddings") or config["max_position_embeddings"])
        scale = int(config["max_position_embeddings"]) / self.original
        self.factor = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(self.original))

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        use_long = position_ids.max() + 1 > self.original
        inv_freq = torch.where(use_long, self.long_inv, self.short_inv)
        freqs = position_ids[..., None].float() * inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        return (angles.cos() * self.factor).to(x.dtype), (angles.sin() * self.factor).to(x.dtype)


class Phi3VText(torch.nn.Module):
    """`(inputs_embeds, attention_mask) -> last_hidden_state`: causal Phi-3 decoder, positions from the mask."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        from transformers import Phi3Config, Phi3Model

        heads = int(config["num_attention_heads"])
        phi3 = Phi3Config(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)),
            hidden_act=str(config.get("hidden_act", "silu")),
            max_position_embeddings=int(config["max_position_embeddings"]),
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
            sliding_window=None,
        )
        phi3._attn_implementation = "eager"
        self.model = Phi3Model(phi3)
        self.model.rotary_emb = LongRopeTables(config, int(config["hidden_size"]) // heads)
        self.window = config.get("sliding_window")

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        mask = additive_mask(attention_mask, bidirectional=False, window=self.window, dtype=inputs_embeds.dtype)
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=positions_from_mask(attention_mask),
            use_cache=False,
        )
        return EncoderOutput(last_hidden_state=out.last_hidden_state)


class Phi3V(torch.nn.Module):
    """The whole embedder for checks: word embeddings, vision table, decoder (splicing is the runtime's)."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        config = read_config(model_dir)
        nested = _VISION + "img_processor.vision_model."  # transformers 4.x CLIP names (hub checkpoints); 5.x: flat
        state = {
            _VISION + "img_processor." + k[len(nested) :] if k.startswith(nested) else k: v
            for k, v in load_weights(model_dir).items()
        }
        words = next((state.pop(k) for k in _WORDS if k in state), None)
        require(words is not None, model_dir, f"checkpoint has no word embeddings ({' or '.join(_WORDS)})")
        state.pop("model.vision_embed_tokens.wte.weight", None)
        self.embed_tokens = torch.nn.Embedding.from_pretrained(words, freeze=True)
        self.vision = Phi3VVision(config, state, model_dir)
        self.text = Phi3VText(config)
        renamed = {_rename(k): v for k, v in state.items()}
        layers = self.vision.clip.config.num_hidden_layers
        dropped = tuple(f"vision.clip.encoder.layers.{i}." for i in range(layers, 256))
        self.text.model.embed_tokens = self.embed_tokens  # one table (the decoder itself takes inputs_embeds)
        shared = {"embed_tokens.weight": words, "text.model.embed_tokens.weight": words}
        load_exact(self, {**shared, **renamed}, model_dir, ignore=("lm_head.", *dropped))


def _rename(key: str) -> str:
    """Hub name -> ours."""
    if key.startswith(_VISION + "img_processor."):
        return "vision.clip." + key[len(_VISION + "img_processor.") :]
    if key.startswith(_VISION + "img_projection."):
        return "vision.projection." + key[len(_VISION + "img_projection.") :]
    if key.startswith(_VISION):
        return "vision." + key[len(_VISION) :]
    if key.startswith("model."):
        return "text.model." + key[len("model.") :]
    return key


class Phi3VDecoder(torch.nn.Module):
    """The framework's decoder signature; positions come from the mask (the runtime's are the same, 0..n-1)."""

    def __init__(self, text: Phi3VText) -> None:
        super().__init__()
        self.text = text

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.text(inputs_embeds, attention_mask).last_hidden_state


class Phi3VFamily:
    """`loader` of the Phi3VForCausalLM zoo row (VLM2Vec: last token, normalized)."""

    def parameters(self, model_dir: Path, config: dict[str, Any]) -> int:
        from trt_embed.exporter.source import weight_files

        total = 0
        for path in weight_files(model_dir):
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), "np") as f:
                    total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
        return total

    def load(self, model_dir: Path, entry: ZooEntry, config: dict[str, Any]) -> Any:
        from trt_embed.exporter.models.qwen2_vl import token_of
        from trt_embed.exporter.models.vlm_parts import VlmParts

        model = Phi3V(model_dir).eval()
        placeholder_id = _token_id(model_dir, str(entry.recipe.get("image_token", "<|image|>")))
        bos = token_of(model_dir, int(config.get("bos_token_id", 1)))
        processor = (
            json.loads((model_dir / "preprocessor_config.json").read_text())
            if (model_dir / "preprocessor_config.json").is_file()
            else {}
        )
        record = {
            "family": "phi3_v",
            "processor": {"num_crops": int(processor.get("num_crops", entry.recipe.get("num_crops", 4)))},
            "image_token_id": placeholder_id,
            # the original tokenizes the text around each image on its own, with BOS: image tokens, then BOS
            "image_placeholder": token_of(model_dir, placeholder_id) + bos,
            "templates": dict(entry.recipe.get("templates") or {}),
            "suffix": "",
        }
        return VlmParts(
            vision=model.vision,
            vision_inputs=["pixel_values", "token_index"],
            vision_axes={"pixel_values": {0: "crops"}, "token_index": {0: "image_tokens"}},
            decoder=Phi3VDecoder(model.text).eval(),
            embeddings=model.embed_tokens.weight,
            record=record,
            pooling=entry.default_pooling,
            max_positions=int(config["max_position_embeddings"]),
            prompts=dict(entry.recipe.get("prompts") or {}),
        )


def _token_id(model_dir: Path, token: str) -> int:
    from tokenizers import Tokenizer

    found = Tokenizer.from_file(str(model_dir / "tokenizer.json")).token_to_id(token)
    if found is None:
        from trt_embed.errors import ExportError

        raise ExportError(f"{model_dir}: the tokenizer has no {token!r} token, Phi-3-V's image placeholder")
    return int(found)


FAMILY = Phi3VFamily()

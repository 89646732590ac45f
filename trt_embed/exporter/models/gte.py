"""GTE "new-impl" (`NewModel`, vLLM's GteNewModel: gte-multilingual-base, gte-*-en-v1.5) and Snowflake's port
(`GteModel`: snowflake-arctic-embed-m-v2.0), without the remote code.

Ours rather than transformers' native `GteModel` because that one ignores NTK RoPE scaling
(`rope_scaling: {"type": "ntk"}`), which new-impl applies to every input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trt_embed.exporter.models.layers import (
    EncoderOutput,
    Rotary,
    attention,
    key_padding_bias,
    load_exact,
    load_weights,
    read_config,
    require,
    rope_inv_freq,
    split_heads,
    strip_prefix,
)
from trt_embed.zoo import ZooEntry

_IGNORED = ("pooler.", "classifier.", "lm_head.", "embeddings.position_ids")


@dataclasses.dataclass(frozen=True)
class GteConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    type_vocab_size: int
    layer_norm_eps: float
    inv_freq: tuple[float, ...]


def ntk_inv_freq(dim: int, theta: float, rope_scaling: dict[str, Any] | None) -> torch.Tensor:
    """new-impl's RoPE frequencies. With `{"type": "ntk", "factor": f}` its rotary cache is built for
    `max_position_embeddings * f` positions, so the scaled frequencies apply to every input:
    `(theta * f)^(-2i/d) * f^(-2/d)`."""
    if not rope_scaling:
        return rope_inv_freq(dim, theta)
    factor = float(rope_scaling["factor"])
    return rope_inv_freq(dim, theta * factor) / factor ** (2 / dim)


def gte_config(config: dict[str, Any], state: dict[str, torch.Tensor], where: Path) -> GteConfig:
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    require(config.get("position_embedding_type", "rope") == "rope", where, "only rope position embeddings")
    require(config.get("layer_norm_type", "layer_norm") == "layer_norm", where, "only layer_norm is supported")
    require(config.get("hidden_act", "gelu") == "gelu", where, "only the GeGLU MLP (hidden_act gelu) is supported")
    require(config.get("pack_qkv", True) in (True, "true"), where, "only pack_qkv=true checkpoints are supported")
    require(
        config.get("logn_attention_scale", False) in (False, "false"), where, "logn_attention_scale is not supported"
    )
    scaling = config.get("rope_scaling")
    if scaling:
        require(scaling.get("type") == "ntk", where, f"rope_scaling {scaling!r} is not supported (only type ntk)")
        require(scaling.get("mixed_b") is None, where, "rope_scaling mixed_b is not supported")
    inv_freq = ntk_inv_freq(hidden // heads, float(config.get("rope_theta", 10000.0)), scaling)
    types = state.get("embeddings.token_type_embeddings.weight")
    return GteConfig(
        vocab_size=int(state["embeddings.word_embeddings.weight"].shape[0]),
        hidden_size=hidden,
        num_layers=int(config["num_hidden_layers"]),
        num_heads=heads,
        intermediate_size=int(config["intermediate_size"]),
        type_vocab_size=0 if types is None else int(types.shape[0]),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        inv_freq=tuple(float(f) for f in inv_freq),
    )


class GteAttention(torch.nn.Module):
    def __init__(self, cfg: GteConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.qkv_proj = torch.nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.o_proj = torch.nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, rotary: Rotary, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads, self.head_dim) for t in self.qkv_proj(x).chunk(3, dim=-1))
        return self.o_proj(attention(rotary(q, cos, sin), rotary(k, cos, sin), v, bias, self.head_dim))


class GteGatedMLP(torch.nn.Module):
    """GeGLU: `up_gate_proj` rows are [up | gate]; `down_proj(gelu(gate) * up)`."""

    def __init__(self, cfg: GteConfig) -> None:
        super().__init__()
        self.up_gate_proj = torch.nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down_proj = torch.nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.up_gate_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.gelu(gate) * up)


class GteLayer(torch.nn.Module):
    def __init__(self, cfg: GteConfig) -> None:
        super().__init__()
        self.attention = GteAttention(cfg)
        self.attn_ln = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = GteGatedMLP(cfg)
        self.mlp_ln = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, rotary: Rotary, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        x = self.attn_ln(x + self.attention(x, bias, rotary, cos, sin))
        return self.mlp_ln(x + self.mlp(x))


class GteEmbeddings(torch.nn.Module):
    def __init__(self, cfg: GteConfig) -> None:
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.token_type_embeddings = (
            torch.nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size else None
        )
        self.LayerNorm = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        x = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:
            types = self.token_type_embeddings
            x = x + (types.weight[0] if token_type_ids is None else types(token_type_ids))
        return self.LayerNorm(x)


class GteEncoderLayers(torch.nn.Module):
    def __init__(self, cfg: GteConfig) -> None:
        super().__init__()
        self.layer = torch.nn.ModuleList(GteLayer(cfg) for _ in range(cfg.num_layers))


class GteEncoder(torch.nn.Module):
    """input_ids, attention_mask (, token_type_ids: zeros when omitted) -> `.last_hidden_state`."""

    def __init__(self, cfg: GteConfig) -> None:
        super().__init__()
        self.embeddings = GteEmbeddings(cfg)
        self.encoder = GteEncoderLayers(cfg)
        self.rotary = Rotary(torch.tensor(cfg.inv_freq, dtype=torch.float32))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> EncoderOutput:
        x = self.embeddings(input_ids, token_type_ids)
        bias = key_padding_bias(attention_mask, x.dtype)
        cos, sin = self.rotary.tables(input_ids.shape[1])
        for layer in self.encoder.layer:
            x = layer(x, bias, self.rotary, cos, sin)
        return EncoderOutput(last_hidden_state=x)


def gte_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """Zoo family `gte`: build and load a NewModel / GteModel checkpoint (the `new.` prefix of
    NewFor*-headed checkpoints such as gte-multilingual-base is stripped)."""
    state = strip_prefix(load_weights(model_dir), "embeddings.word_embeddings.weight", ("new.", "model."))
    model = GteEncoder(gte_config(read_config(model_dir), state, model_dir))
    load_exact(model, state, model_dir, ignore=_IGNORED)
    return model.eval()

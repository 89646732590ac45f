"""The flash-attn style post-norm BERT with rotary positions that NomicBert and jina-embeddings-v3 share:
`embeddings.{word,token_type}_embeddings` -> `emb_ln` -> blocks of (Wqkv, RoPE, out_proj, norm1, MLP, norm2).

Weight names mirror the checkpoints (`encoder.layers.{i}.attn.Wqkv`, `.mlp.fc1` ...) so they load by name.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from trt_embed.exporter.models.layers import (
    DynamicNtkRotary,
    EncoderOutput,
    Rotary,
    attention,
    key_padding_bias,
    rope_inv_freq,
    split_heads,
)


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    num_experts: int
    top_k: int
    every_n_layers: int  # layer i is MoE when i % every_n_layers == 1
    normalize_weights: bool


@dataclasses.dataclass(frozen=True)
class RotaryBertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    type_vocab_size: int
    activation: str  # "swiglu" (fc11 * silu(fc12)) or "gelu" (exact erf)
    qkv_bias: bool
    fc1_bias: bool
    fc2_bias: bool
    layer_norm_eps: float
    rope_base: float
    rotary_dim: int
    moe: MoEConfig | None = None
    rope_scaling: tuple[float, int] | None = None  # dynamic NTK: (factor, max trained positions)

    def is_moe_layer(self, index: int) -> bool:
        return self.moe is not None and index % self.moe.every_n_layers == 1


class GatedMLP(torch.nn.Module):
    """SwiGLU: `fc2(fc11(x) * silu(fc12(x)))` (fc11 is the value, fc12 the gate)."""

    def __init__(self, cfg: RotaryBertConfig) -> None:
        super().__init__()
        self.fc11 = torch.nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.fc1_bias)
        self.fc12 = torch.nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.fc1_bias)
        self.fc2 = torch.nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.fc2_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc11(x) * F.silu(self.fc12(x)))


class Mlp(torch.nn.Module):
    """`fc2(gelu(fc1(x)))`, exact-erf GELU."""

    def __init__(self, cfg: RotaryBertConfig) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.fc1_bias)
        self.fc2 = torch.nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.fc2_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Router(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig, moe: MoEConfig) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(cfg.hidden_size, moe.num_experts, bias=False)


class ExpertWeights(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig, moe: MoEConfig) -> None:
        super().__init__()
        rows = moe.num_experts * cfg.intermediate_size
        self.w1 = torch.nn.Parameter(torch.empty(rows, cfg.hidden_size))
        self.w2 = torch.nn.Parameter(torch.empty(rows, cfg.hidden_size))


class Experts(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig, moe: MoEConfig) -> None:
        super().__init__()
        self.mlp = ExpertWeights(cfg, moe)
        self.bias = torch.nn.Parameter(torch.empty(cfg.hidden_size))


class MoEMlp(torch.nn.Module):
    """NomicMoELayer: softmax router (fp32) -> top-k experts -> weighted sum of `gelu(x W1_e^T) W2_e`, plus one
    shared bias. Routing is in the graph (TopK); each expert's output is weighted by its routing weight, which
    is zero unless the expert is among the token's top k, so the result equals the sparse computation."""

    def __init__(self, cfg: RotaryBertConfig, moe: MoEConfig) -> None:
        super().__init__()
        self.moe = moe
        self.intermediate_size = cfg.intermediate_size
        self.router = Router(cfg, moe)
        self.experts = Experts(cfg, moe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.router.layer(x).float().softmax(dim=-1)
        top_weights, top_experts = probs.topk(self.moe.top_k, dim=-1)
        if self.moe.normalize_weights:
            top_weights = top_weights / top_weights.sum(dim=-1, keepdim=True)
        weights = torch.zeros_like(probs).scatter(-1, top_experts, top_weights).to(x.dtype)
        w1 = self.experts.mlp.w1.view(self.moe.num_experts, self.intermediate_size, -1)
        w2 = self.experts.mlp.w2.view(self.moe.num_experts, self.intermediate_size, -1)
        out = self.experts.bias.expand_as(x)
        for e in range(self.moe.num_experts):
            out = out + weights[..., e : e + 1] * torch.matmul(F.gelu(torch.matmul(x, w1[e].t())), w2[e])
        return out


class Attention(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.Wqkv = torch.nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.out_proj = torch.nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.qkv_bias)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, rotary: Rotary, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads, self.head_dim) for t in self.Wqkv(x).chunk(3, dim=-1))
        return self.out_proj(attention(rotary(q, cos, sin), rotary(k, cos, sin), v, bias, self.head_dim))


class Block(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig, index: int) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp: torch.nn.Module
        if cfg.moe is not None and cfg.is_moe_layer(index):
            self.mlp = MoEMlp(cfg, cfg.moe)
        else:
            self.mlp = GatedMLP(cfg) if cfg.activation == "swiglu" else Mlp(cfg)
        self.norm1 = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.norm2 = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, rotary: Rotary, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, bias, rotary, cos, sin))
        return self.norm2(x + self.mlp(x))


class Embeddings(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig) -> None:
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.token_type_embeddings = torch.nn.Embedding(max(cfg.type_vocab_size, 1), cfg.hidden_size)


class Encoder(torch.nn.Module):
    def __init__(self, cfg: RotaryBertConfig) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))


class RotaryBert(torch.nn.Module):
    """input_ids, attention_mask (, token_type_ids: zeros when omitted) -> `.last_hidden_state`."""

    def __init__(self, cfg: RotaryBertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.emb_ln = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.encoder = Encoder(cfg)
        self.rotary = (
            Rotary(rope_inv_freq(cfg.rotary_dim, cfg.rope_base))
            if cfg.rope_scaling is None
            else DynamicNtkRotary(cfg.rotary_dim, cfg.rope_base, *cfg.rope_scaling)
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> EncoderOutput:
        x = self.embeddings.word_embeddings(input_ids)
        if token_type_ids is None:
            x = x + self.embeddings.token_type_embeddings.weight[0]
        else:
            x = x + self.embeddings.token_type_embeddings(token_type_ids)
        x = self.emb_ln(x)
        bias = key_padding_bias(attention_mask, x.dtype)
        cos, sin = self.rotary.tables(input_ids.shape[1])
        for layer in self.encoder.layers:
            x = layer(x, bias, self.rotary, cos, sin)
        return EncoderOutput(last_hidden_state=x)

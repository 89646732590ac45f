"""Pieces shared by our encoder implementations: weights by name, rotary embeddings, masked attention."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.source import optional_json as optional_json  # re-exported for the models
from trt_embed.exporter.source import weight_files


@dataclasses.dataclass
class EncoderOutput:
    """What `EmbeddingGraph` reads from an encoder: token states [B, S, H]."""

    last_hidden_state: torch.Tensor


def read_config(model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    return config


def load_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """All checkpoint tensors by name, as float32 (bf16/fp16 checkpoints are exported in fp32)."""
    files = weight_files(model_dir)
    if not files:
        raise ExportError(f"{model_dir} has no model weights (model.safetensors or pytorch_model.bin)")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(path)))
        else:
            state.update(torch.load(path, map_location="cpu", weights_only=True))
    return {name: t.float() if t.is_floating_point() else t for name, t in state.items()}


def strip_prefix(state: dict[str, torch.Tensor], anchor: str, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Remove the base-model prefix (e.g. `roberta.`, `new.`) that task-head checkpoints put on encoder keys;
    `anchor` is a key every checkpoint of the model has."""
    for prefix in ("", *prefixes):
        if prefix + anchor in state:
            return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    raise ExportError(f"checkpoint has no {anchor!r} (nor with prefix {', '.join(prefixes)}); is it the right model?")


def load_exact(
    module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path, ignore: tuple[str, ...] = ()
) -> None:
    """Load weights by name; any missing or unused tensor is an error (a silently dropped weight is a wrong
    model). Keys starting with one of `ignore` (heads the embedding graph does not use) are skipped."""
    kept = {k: v for k, v in state.items() if not k.startswith(ignore)}
    result = module.load_state_dict(kept, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(
            f"{where}: the checkpoint does not match the model its config describes "
            f"(missing {sorted(result.missing_keys)[:8]}, unused {sorted(result.unexpected_keys)[:8]}). "
            "Check that config.json belongs to these weights; report unsupported variants of this architecture."
        )


def require(condition: bool, where: Path, message: str) -> None:
    if not condition:
        raise ExportError(f"{where}: {message}")


def rope_inv_freq(dim: int, base: float) -> torch.Tensor:
    """Standard RoPE frequencies `base^(-2i/dim)`, in float32."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def _positions(seq_len: torch.Tensor | int, device: torch.device) -> torch.Tensor:
    """0..S-1 as float32, made as an int64 range and cast: a float Range trips TensorRT in fp16 graphs."""
    return torch.arange(seq_len, dtype=torch.int64, device=device).to(torch.float32)


class Rotary(torch.nn.Module):
    """GPT-NeoX (half-rotation) rotary embedding on the first `inv_freq.numel() * 2` channels of each head,
    positions 0..S-1 (right padding keeps them independent of padding)."""

    def __init__(self, inv_freq: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.rotary_dim = int(inv_freq.numel()) * 2

    def tables(self, seq_len: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = _positions(seq_len, self.inv_freq.device)
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos(), angles.sin()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [B, heads, S, d]; cos/sin [S, rotary_dim]."""
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        half = self.rotary_dim // 2
        rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
        out = rot * cos + rotated * sin
        return torch.cat((out, rest), dim=-1) if rest.shape[-1] else out


class DynamicNtkRotary(Rotary):
    """NomicBert's dynamic-NTK rotary (`rotary_scaling_factor` f, `max_trained_positions` M): for a batch padded
    to S > M the base grows to `base * (f * S / M - (f - 1)) ** (d / (d - 2))`; for S <= M that factor clamps to
    1, the plain base. Stateless: the original caches the tables of its longest batch so far and reuses them for
    later, shorter ones; ours equals a freshly loaded original model run on this batch."""

    def __init__(self, dim: int, base: float, factor: float, max_positions: int) -> None:
        super().__init__(rope_inv_freq(dim, base))
        self.dim, self.base, self.factor, self.max_positions = dim, base, factor, max_positions

    def tables(self, seq_len: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = _positions(seq_len, self.inv_freq.device)
        length = positions[-1:] + 1.0  # a tensor, so the graph computes the base from the batch's length
        growth = (self.factor * length / self.max_positions - (self.factor - 1.0)).clamp(min=1.0)
        base = self.base * growth ** (self.dim / (self.dim - 2))
        exponents = torch.arange(0, self.dim, 2, dtype=torch.float32, device=self.inv_freq.device) / self.dim
        inv_freq = 1.0 / base**exponents
        freqs = positions[:, None] * inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos(), angles.sin()


def key_padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] mask (1 = token) -> additive bias [B, 1, 1, S]: 0 for tokens, the dtype's minimum for padding.
    A select rather than `(1 - mask) * min`, which becomes 0 * -inf = NaN if a graph is converted to fp16."""
    keep = attention_mask[:, None, None, :] > 0
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, head_dim: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v over [B, heads, S, d]; returns [B, S, heads * d]."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim)) + bias
    out = torch.matmul(scores.softmax(dim=-1), v)
    return out.transpose(1, 2).flatten(2)


def split_heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """[B, S, heads * d] -> [B, heads, S, d] (sizes as constants, so the graph has no shape arithmetic)."""
    return x.reshape((*x.shape[:-1], heads, head_dim)).transpose(1, 2)

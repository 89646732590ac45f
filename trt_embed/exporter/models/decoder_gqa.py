"""Decoder graphs with fused attention for onnxruntime-cuda: onnxruntime's `GroupQueryAttention` and
`MultiHeadAttention` contrib ops.

The plain decoder graph (decoder.py) computes attention as MatMul + Softmax over a padded [B, heads, S, S]
tensor built from a 4D mask. Here each layer's attention is one contrib-op node, so neither the mask nor the
score tensor is materialized (flash or memory-efficient attention on CUDA): causal decoders get
`GroupQueryAttention` (grouped key/value heads as they are, causality and each row's length `seqlens_k` inside
the kernel); bidirectional ones (GritLM, voyage) `MultiHeadAttention` with each row's length as its 1D key
mask, key/value heads repeated for it. Both ops read right-padded rows, so the graph rolls each left-padded row
to the right at its start and back at its end: it takes either padding side, like the plain one.

The transformers model is reused as is (its norms, rotary embedding, MLP); only its attention function is
swapped, through transformers' `AttentionInterface`, for one that traces into placeholder nodes, renamed to
the contrib ops after export (`gqa_from_placeholders`). Sliding windows are supported only where they never
bind (no shorter than the model's input limit; Gemma 3 halves its window when bidirectional), soft-capped
attention not at all: those decoders keep the plain graph. Checked against transformers on CPU (onnxruntime's
CPU kernels of both ops) at export and in tests; tests/gpu checks them on a GPU.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from trt_embed.exporter.checks import FP16_MIN_COSINE
from trt_embed.exporter.external_data import data_files
from trt_embed.exporter.models.decoder import DecoderEncoder
from trt_embed.manifest import EngineEntry

log = logging.getLogger("trt_embed.export")

IMPLEMENTATION = "trt_embed_gqa"
PLACEHOLDER = "GqaPlaceholder"
MHA_PLACEHOLDER = "MhaPlaceholder"
_DOMAIN = "trt_embed"


class _GroupQueryAttention(torch.autograd.Function):
    """q [B, S, H*D], k and v [B, S, Hkv*D], right-padded rows of `seqlens_k + 1` tokens -> [B, S, H*D].
    The forward is the reference (causal, each row's keys cut at its length); the trace is the placeholder."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        seqlens_k: torch.Tensor,
        total: torch.Tensor,
        heads: int,
        kv_heads: int,
        scale: float,
    ) -> torch.Tensor:
        batch, seq, _ = q.shape
        dim = q.shape[-1] // heads
        group = heads // kv_heads
        qh = q.view(batch, seq, heads, dim).transpose(1, 2)
        kh = k.view(batch, seq, kv_heads, dim).transpose(1, 2).repeat_interleave(group, 1)
        vh = v.view(batch, seq, kv_heads, dim).transpose(1, 2).repeat_interleave(group, 1)
        index = torch.arange(seq, device=q.device)
        causal = index[None, :] <= index[:, None]
        allowed = causal[None] & (index[None, None, :] <= seqlens_k[:, None, None].long())
        out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed[:, None], scale=scale)
        return out.transpose(1, 2).reshape(batch, seq, heads * dim)

    @staticmethod
    def symbolic(
        g: Any,
        q: Any,
        k: Any,
        v: Any,
        seqlens_k: Any,
        total: Any,
        heads: int,
        kv_heads: int,
        scale: float,
    ) -> Any:
        return g.op(
            f"{_DOMAIN}::{PLACEHOLDER}",
            q,
            k,
            v,
            seqlens_k,
            total,
            num_heads_i=heads,
            kv_num_heads_i=kv_heads,
            scale_f=scale,
        )


class _BidirectionalAttention(torch.autograd.Function):
    """q, k, v [B, S, H*D] (key/value heads already repeated), right-padded rows of `lengths` tokens ->
    [B, S, H*D], every key of a row visible; traced as the placeholder of `MultiHeadAttention` (1D key mask)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, heads: int, scale: float
    ) -> torch.Tensor:
        batch, seq, _ = q.shape
        qh, kh, vh = (t.view(batch, seq, heads, -1).transpose(1, 2) for t in (q, k, v))
        visible = torch.arange(seq, device=q.device)[None, :] < lengths[:, None].long()
        out = torch.nn.functional.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=visible[:, None, None], scale=scale
        )
        return out.transpose(1, 2).reshape(batch, seq, -1)

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any, lengths: Any, heads: int, scale: float) -> Any:
        return g.op(f"{_DOMAIN}::{MHA_PLACEHOLDER}", q, k, v, lengths, num_heads_i=heads, scale_f=scale)


def _repeat_heads(states: torch.Tensor, group: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, S, Hkv*group*D], each key/value head repeated for its group of query heads."""
    batch, kv_heads, seq, dim = states.shape
    spread = states.transpose(1, 2)[:, :, :, None, :].expand(batch, seq, kv_heads, group, dim)
    return spread.reshape(batch, seq, kv_heads * group * dim)


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q [B, H, S, D], k/v [B, Hkv, S, D] -> [B, S, H, D]. The
    4D mask is ignored: rows come from `trt_seqlens_k`, causality from `trt_causal` (passed down as model kwargs).
    Bidirectional layers repeat the key/value heads for `MultiHeadAttention`, which has no grouped heads."""
    config = module.config  # type: ignore[attr-defined]
    heads, kv_heads = int(config.num_attention_heads), int(config.num_key_value_heads)
    dim = query.shape[-1]
    scale = float(scaling) if scaling is not None else dim**-0.5
    if not kwargs["trt_causal"]:
        group = heads // kv_heads
        lengths = kwargs["trt_seqlens_k"] + 1
        q = query.transpose(1, 2).flatten(2)
        both = _BidirectionalAttention.apply(
            q, _repeat_heads(key, group), _repeat_heads(value, group), lengths, heads, scale
        )
        return both.unflatten(2, (heads, dim)), None
    out = _GroupQueryAttention.apply(
        query.transpose(1, 2).flatten(2),
        key.transpose(1, 2).flatten(2),
        value.transpose(1, 2).flatten(2),
        kwargs["trt_seqlens_k"],
        kwargs["trt_total"],
        heads,
        kv_heads,
        scale,
    )
    return out.unflatten(2, (heads, dim)), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, _attention)


def supported(encoder: torch.nn.Module | None, max_length: int) -> str | None:
    """Why the encoder cannot have a GroupQueryAttention graph for inputs of up to `max_length` tokens (None: it
    can). Sliding windows at least that long never bind, so such layers are full attention here."""
    if not isinstance(encoder, DecoderEncoder) or type(encoder) is not DecoderEncoder:
        return "not a plain decoder encoder"
    windows = [w for w in encoder.windows.values() if w is not None]
    if windows and min(windows) < max_length:
        return f"sliding windows ({min(windows)} tokens) shorter than the inputs ({max_length} tokens)"
    config = encoder.model.config
    if getattr(config, "attn_logit_softcapping", None):
        return "attention logit soft-capping"
    if not hasattr(config, "num_key_value_heads") or config.num_attention_heads % config.num_key_value_heads:
        return "no grouped key/value heads in its config"
    return None


class GqaDecoderEncoder(torch.nn.Module):
    """`DecoderEncoder`'s contract (`(input_ids, attention_mask) -> .last_hidden_state`, either padding side)
    with each layer's attention as one GroupQueryAttention node (use inside `gqa_attention`)."""

    def __init__(self, model: torch.nn.Module, *, bidirectional: bool) -> None:
        super().__init__()
        self.model = model
        self.bidirectional = bidirectional

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
        seq = input_ids.shape[1]
        lengths = attention_mask.sum(1)
        # a left-padded row (its last column real, shorter than the width) is rolled left by its padding
        offset = (torch.ones_like(lengths) * seq - lengths) * attention_mask[:, -1]
        index = torch.arange(seq, device=input_ids.device)[None, :]
        right = torch.gather(input_ids, 1, (index + offset[:, None]) % seq)
        out = self.model(
            input_ids=right,
            attention_mask=torch.zeros((1, 1, 1, 1), device=input_ids.device),  # unused: the op masks itself
            position_ids=index.expand(input_ids.shape[0], seq),
            use_cache=False,
            trt_seqlens_k=(lengths - 1).to(torch.int32),
            trt_total=torch.ones_like(attention_mask[0]).sum().to(torch.int32),
            trt_causal=not self.bidirectional,
        )
        hidden: torch.Tensor = out.last_hidden_state
        back = ((index - offset[:, None]) % seq)[:, :, None].expand(-1, -1, hidden.shape[-1])
        return BaseModelOutput(last_hidden_state=torch.gather(hidden, 1, back))


@contextlib.contextmanager
def gqa_attention(model: torch.nn.Module) -> Iterator[None]:
    """The model's attention swapped for the GroupQueryAttention function while inside."""
    _register()
    before = model.config._attn_implementation
    model.set_attn_implementation(IMPLEMENTATION)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_attn_implementation(before)  # type: ignore[operator]


def gqa_graph(graph: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of an `EmbeddingGraph` over a decoder, its weights in `dtype`, its encoder the fused-attention one.
    Buffers keep their precision: the rotary inverse frequencies rounded to 16 bits would turn each rotary angle
    by up to position x 1e-3 (fp16) or x 4e-3 (bf16) radians; the rotary code casts cos/sin to `dtype` itself.
    The weights are converted while copying, so the fp32 weights are never held twice."""
    memo: dict[int, Any] = {
        id(p): torch.nn.Parameter(p.detach().to(dtype), requires_grad=False) for p in graph.parameters()
    }
    fused = copy.deepcopy(graph, memo)
    fused.encoder = GqaDecoderEncoder(fused.encoder.model, bidirectional=fused.encoder.bidirectional)
    return fused.eval()


def gqa_from_placeholders(path: Path) -> int:
    """Rename the traced placeholders to `com.microsoft.GroupQueryAttention` (empty past key/value inputs) or
    `com.microsoft.MultiHeadAttention` (bidirectional) in place; the count of nodes renamed. Weights stored
    beside the graph are left as they are."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    count = 0
    for node in model.graph.node:
        if node.domain == _DOMAIN and node.op_type == PLACEHOLDER:
            inputs = list(node.input)
            del node.input[:]
            node.input.extend([*inputs[:3], "", "", *inputs[3:5]])
            node.op_type, node.domain = "GroupQueryAttention", "com.microsoft"
            # present key/value: unused here, named so that every kernel of the op has somewhere to write them
            node.output.extend([f"gqa{count}_present_key", f"gqa{count}_present_value"])
            count += 1
        elif node.domain == _DOMAIN and node.op_type == MHA_PLACEHOLDER:
            inputs = list(node.input)
            del node.input[:]
            node.input.extend([*inputs[:3], "", inputs[3]])  # no bias; key_padding_mask [B]: each row's length
            node.op_type, node.domain = "MultiHeadAttention", "com.microsoft"
            count += 1
    imports = [o for o in model.opset_import if o.domain not in (_DOMAIN, "com.microsoft")]
    del model.opset_import[:]
    model.opset_import.extend([*imports, onnx.helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(path))
    return count


def export_gqa_graph(
    graph: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    dtype: torch.dtype,
    trace: Callable[..., None],
) -> None:
    """Trace `graph` (an `EmbeddingGraph` over a supported decoder) in `dtype` with GroupQueryAttention to `path`.
    `trace` is `onnx_graph.onnx_from_graph`."""
    fused = gqa_graph(graph, dtype)
    with gqa_attention(fused.encoder.model):
        trace(fused, example, path)
    renamed = gqa_from_placeholders(path)
    log.info("%s: %d attention layers as GroupQueryAttention", path.name, renamed)


Measured = Callable[[str, str, bool], tuple[EngineEntry, np.ndarray]]


def gqa_engines(
    graph: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    out: Path,
    prefix: str,
    measured: Measured,
    trace: Callable[..., None],
    max_length: int,
) -> list[EngineEntry]:
    """`model.gqa.fp16.onnx` (`model.mha.fp16.onnx` for bidirectional decoders) for onnxruntime-cuda (manifest
    target `cuda`, preferred there over the plain fp16 graph), checked on CPU against the fp32 PyTorch reference
    like every fp16 graph; none where the decoder is not supported or the check fails. `measured(file,
    precision, optimized)` is the exporter's checker."""
    reason = supported(getattr(graph, "encoder", None), max_length)
    if reason is not None:
        log.info("no fused-attention graph: %s", reason)
        return []
    bidirectional = bool(graph.encoder.bidirectional)
    file = f"{prefix}model.{'mha' if bidirectional else 'gqa'}.fp16.onnx"
    export_gqa_graph(graph, example, out / file, torch.float16, trace)
    entry, cos = measured(file, "fp16", True)
    if cos.min() < FP16_MIN_COSINE:
        log.warning("the GroupQueryAttention fp16 graph is inaccurate (min cosine %.5f); not shipping it", cos.min())
        path = out / file
        for name in data_files(path):
            (path.parent / name).unlink(missing_ok=True)
        path.unlink()
        return []
    entry.target = "cuda"
    op = "MultiHeadAttention" if bidirectional else "GroupQueryAttention"
    entry.extra = {**entry.extra, "attention": op, "checked": "on CPU and in tests/gpu"}
    return [entry]

"""Decoder LLMs as embedding encoders: no KV cache, explicit attention masks, positions from the mask.

`DecoderEncoder` wraps a transformers base model (`LlamaModel`, `Qwen3Model`, ...). It builds the 4D additive
attention mask itself (padding, plus causal or bidirectional, plus each layer type's sliding window) and passes
it to the model, which uses a prepared 4D mask as is. Position ids are `cumsum(mask) - 1`, so a left-padded row
gets the same positions as the row alone. No Python branch depends on the data: one trace serves every
padding side, batch and length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput

from trt_embed.errors import ExportError
from trt_embed.zoo import ZooEntry

ATTENTIONS = ("causal", "bidirectional")
_LAYER_TYPES = ("full_attention", "sliding_attention")


def attention_kind(entry: ZooEntry, config: Any) -> str:
    """`bidirectional` when the zoo recipe or the checkpoint's config (`use_bidirectional_attention`) says so."""
    kind = str(entry.recipe.get("attention", "causal"))
    if kind not in ATTENTIONS:
        raise ExportError(f"zoo entry {entry.architecture}: attention {kind!r} is not one of {', '.join(ATTENTIONS)}")
    if getattr(config, "use_bidirectional_attention", False):
        return "bidirectional"
    return kind


def additive_mask(
    attention_mask: torch.Tensor, *, bidirectional: bool, window: int | None, dtype: torch.dtype
) -> torch.Tensor:
    """[B, S] padding mask -> [B, 1, S, S] additive mask (0 attend, dtype min blocked).

    Causal: key j is visible to query i when j <= i; sliding: also i - j < window (bidirectional: |i - j| <
    window). Indices are raw columns; padding is contiguous, so distances between real tokens are the same
    with either padding side. Every query sees at least itself: a query at padding attends to itself only, so
    no row is fully blocked and no NaN appears even where a reduced precision turns `min` into -inf (real
    tokens are unaffected: they never see padding, and their own position is always visible).
    """
    seq = attention_mask.shape[1]
    index = torch.arange(seq, device=attention_mask.device)
    distance = index[:, None] - index[None, :]  # query i (row) minus key j (column)
    allowed = attention_mask[:, None, None, :].to(torch.bool)
    if not bidirectional:
        allowed = allowed & (distance >= 0)
    if window is not None:
        allowed = allowed & (distance.abs() < window)
    allowed = allowed | (distance == 0)
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the real tokens of each row, whatever the padding side (padding gets 0 or the last)."""
    return (attention_mask.to(torch.int64).cumsum(-1) - 1).clamp(min=0)


class DecoderEncoder(torch.nn.Module):
    """Runs a decoder base model as an encoder: `(input_ids, attention_mask) -> .last_hidden_state`."""

    def __init__(self, model: torch.nn.Module, *, bidirectional: bool) -> None:
        super().__init__()
        self.model = model
        self.bidirectional = bidirectional
        self.windows = _layer_windows(model.config)

    def masks(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | dict[str, torch.Tensor]:
        masks = {
            kind: additive_mask(attention_mask, bidirectional=self.bidirectional, window=window, dtype=dtype)
            for kind, window in self.windows.items()
        }
        if set(masks) == {"full_attention"}:
            return masks["full_attention"]  # a single prepared 4D mask: accepted by every decoder class
        return masks  # per layer type: the classes with sliding layers accept this mapping

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
        dtype = self.model.get_input_embeddings().weight.dtype
        out = self.model(
            input_ids=input_ids,
            attention_mask=self.masks(attention_mask, dtype),
            position_ids=positions_from_mask(attention_mask),
            use_cache=False,
        )
        return BaseModelOutput(last_hidden_state=out.last_hidden_state)


class EmbedsDecoder(torch.nn.Module):
    """A VLM's language model as the decoder graph: (inputs_embeds, attention_mask, position_ids) -> last hidden
    states [B, S, H]; causal or bidirectional, sliding windows and per-layer-type masks as its config says."""

    def __init__(self, language_model: torch.nn.Module, *, bidirectional: bool) -> None:
        super().__init__()
        self.text = DecoderEncoder(language_model, bidirectional=bidirectional)

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        mask = self.text.masks(attention_mask, inputs_embeds.dtype)
        out = self.text.model(
            inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids, use_cache=False
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


def _layer_windows(config: Any) -> dict[str, int | None]:
    """Attention window per layer type (None: full attention)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not layer_types:  # one mask for all layers (e.g. Mistral: sliding everywhere when `sliding_window` is set)
        return {"full_attention": int(window) if window else None}
    unknown = sorted(set(layer_types) - set(_LAYER_TYPES))
    if unknown:
        raise ExportError(
            f"{type(config).__name__}: layer types {unknown} are not supported by the decoder exporter "
            f"(supported: {', '.join(_LAYER_TYPES)})"
        )
    windows: dict[str, int | None] = {}
    for kind in set(layer_types):
        if kind == "sliding_attention":
            if not window:
                raise ExportError(f"{type(config).__name__} has sliding-attention layers but no `sliding_window`")
            windows[kind] = int(window)
        else:
            windows[kind] = None
    return windows


def resolve_class(name: str) -> Any:
    """A transformers class by name, or `package.module:Class` for model code of our own."""
    import importlib

    import transformers

    module_name, _, class_name = name.rpartition(":")
    module = importlib.import_module(module_name) if module_name else transformers
    found = getattr(module, class_name, None)
    if found is None:
        raise ExportError(f"model class {name!r} does not exist (transformers {transformers.__version__})")
    return found


def load_base_model(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """The zoo `loader` class (a transformers base model, or `AutoModel`), eager attention, no cache."""
    loader = resolve_class(entry.loader)
    try:
        model: torch.nn.Module = loader.from_pretrained(
            str(model_dir),
            attn_implementation="eager",
            trust_remote_code=trust_remote_code,
            use_cache=False,
            dtype=torch.float32,
        )
    except Exception as exc:
        raise ExportError(f"{model_dir}: {entry.loader} cannot load this checkpoint ({exc})") from exc
    return model.eval()


def decoder_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """Encoder builder of the `decoder` zoo family (see families.py)."""
    model = load_base_model(model_dir, entry, trust_remote_code)
    encoder = DecoderEncoder(model, bidirectional=attention_kind(entry, model.config) == "bidirectional").eval()
    check_against_model(encoder, entry)
    return encoder


def check_against_model(encoder: DecoderEncoder, entry: ZooEntry, length: int = 8, pad: int = 3) -> None:
    """The wrapper must agree with the model's own forward (its own mask code, default positions) on one
    unpadded input, and give the same states for that input left- and right-padded. Catches architectures
    whose forward ignores a prepared 4D mask or explicit positions (e.g. under `--convert embed`)."""
    model = encoder.model
    vocab = int(model.get_input_embeddings().weight.shape[0])
    ids = (torch.arange(length) * 7 + 3).remainder(vocab)[None, :]
    ones = torch.ones_like(ids)
    if encoder.bidirectional and not getattr(model.config, "use_bidirectional_attention", False):
        own_mask: torch.Tensor = torch.zeros((1, 1, length, length))  # all visible, built independently
    else:
        own_mask = ones
    filler = torch.zeros((1, pad), dtype=ids.dtype)
    unsupported = (
        f"{entry.architecture} cannot be exported as a decoder embedder: its forward does not take a prepared "
        "4D attention mask and explicit position ids the way transformers' Llama-style decoders do"
    )
    try:
        with torch.no_grad():
            own = model(input_ids=ids, attention_mask=own_mask, use_cache=False).last_hidden_state[0]
            plain = encoder(ids, ones).last_hidden_state[0]
            left = encoder(torch.cat([filler, ids], 1), torch.cat([filler, ones], 1)).last_hidden_state[0, pad:]
            right = encoder(torch.cat([ids, filler], 1), torch.cat([ones, filler], 1)).last_hidden_state[0, :length]
    except Exception as exc:  # whatever the model's own code raises on our inputs
        raise ExportError(f"{unsupported} ({type(exc).__name__}: {exc}). Please report the architecture.") from exc
    scale = float(own.abs().max()) + 1e-6
    for name, got in (("unpadded", plain), ("left-padded", left), ("right-padded", right)):
        error = float((got - own).abs().max()) / scale
        if error > 1e-4:
            raise ExportError(
                f"{unsupported} (a {name} input differs from the model's own result by {error:.1e} relative). "
                "Please report the architecture."
            )

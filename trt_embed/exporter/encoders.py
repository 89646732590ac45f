"""Encoder builders of the text exporter, one per zoo `family` of text models: how a checkpoint becomes a torch
module whose output has `.last_hidden_state` [B, S, H]. A new text family registers its builder in
`ENCODER_BUILDERS`; model_zoo.yaml names it. (Other exporters are chosen by `export.EXPORTERS`.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from trt_embed.errors import ExportError
from trt_embed.exporter.models.gte import gte_encoder
from trt_embed.exporter.models.jina_v3 import jina_v3_encoder
from trt_embed.exporter.models.nomic_bert import nomic_bert_encoder
from trt_embed.zoo import ZooEntry

EncoderBuilder = Callable[[Path, ZooEntry, bool], torch.nn.Module]


@runtime_checkable
class WeightVariants(Protocol):
    """An encoder whose checkpoint carries named weight variants (jina-v3's task LoRA adapters): the exporter
    exports the base weights as variant `base` and each name as its own variant."""

    def variant_names(self) -> list[str]: ...

    def use_variant(self, name: str | None) -> None:
        """Switch the weights to variant `name` (None: the base weights)."""

    def variant_record(self, name: str) -> dict[str, Any]:
        """What the manifest records about the variant (under `lora_adapters`)."""


def transformers_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """A transformers class by name (the zoo's `loader`), with eager attention for a traceable graph."""
    import transformers

    loader = getattr(transformers, entry.loader)
    try:
        encoder: torch.nn.Module = loader.from_pretrained(
            str(model_dir), attn_implementation="eager", trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        raise ExportError(f"{model_dir}: {entry.loader} cannot load this checkpoint ({exc})") from exc
    return encoder.eval()


def decoder_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """Decoder LLMs (Llama, Mistral, Qwen, Gemma, ...): see exporter/models/decoder.py."""
    from trt_embed.exporter.models.decoder import decoder_encoder as build

    return build(model_dir, entry, trust_remote_code)


ENCODER_BUILDERS: dict[str, EncoderBuilder] = {
    "encoder": transformers_encoder,
    "nomic_bert": nomic_bert_encoder,
    "gte": gte_encoder,
    "jina_v3": jina_v3_encoder,
    "decoder": decoder_encoder,
}


def build_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    try:
        builder = ENCODER_BUILDERS[entry.family]
    except KeyError:
        raise ExportError(f"zoo family {entry.family!r} of {entry.architecture} has no encoder builder") from None
    return builder(model_dir, entry, trust_remote_code)

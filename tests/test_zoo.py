"""The zoo is the only registry: every entry has a tiny test model, and every tiny model maps back to its entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from trt_embed.errors import UnsupportedArchitecture
from trt_embed.zoo import architecture_of, load_zoo, zoo_entry

ENTRIES = sorted(load_zoo())


@pytest.mark.parametrize("architecture", ENTRIES)
def test_entry_has_tiny_model(architecture: str) -> None:
    entry = zoo_entry(architecture)
    built = {"config_class", "model_class", "config"} <= set(entry.tiny)
    assert built or "golden" in entry.tiny, f"{architecture} lacks a tiny test model"
    assert entry.default_pooling in {"cls", "mean", "max", "last", "mean_sqrt_len", "weightedmean"}


@pytest.mark.parametrize("architecture", ENTRIES)
def test_tiny_model_maps_back_to_its_entry(architecture: str, tiny_model: Callable[[str], Path]) -> None:
    saved = json.loads((tiny_model(architecture) / "config.json").read_text())
    assert architecture_of(saved) == architecture


def test_remote_code_class_and_subtypes_route_configs() -> None:
    """jina-v3 says XLMRobertaModel but its auto_map names XLMRobertaLoRA; MoE NomicBert has its own entry."""
    jina = {
        "architectures": ["XLMRobertaModel"],
        "auto_map": {"AutoModel": "jinaai/impl--modeling_lora.XLMRobertaLoRA"},
    }
    assert architecture_of(jina) == "XLMRobertaLoRA"
    assert architecture_of({"architectures": ["XLMRobertaModel"]}) == "XLMRobertaModel"
    unknown_remote = {"architectures": ["BertModel"], "auto_map": {"AutoModel": "someone/code--modeling.MyBert"}}
    assert architecture_of(unknown_remote) == "BertModel"
    assert architecture_of({"architectures": ["NomicBertModel"], "num_experts": 8}) == "NomicBertModel:moe"
    assert architecture_of({"architectures": ["NomicBertModel"], "num_experts": 0}) == "NomicBertModel"
    native = {"architectures": ["NomicBertModel"], "hidden_size": 768}  # saved by transformers' own class
    assert architecture_of(native) == "NomicBertModel:native"
    gte_multilingual = {
        "architectures": ["NewForTokenClassification"],
        "auto_map": {"AutoModel": "x--modeling.NewModel"},
    }
    assert architecture_of(gte_multilingual) == "NewModel"


def test_unknown_architecture_lists_supported() -> None:
    with pytest.raises(UnsupportedArchitecture, match="BertModel"):
        zoo_entry("NoSuchModelForAnything")

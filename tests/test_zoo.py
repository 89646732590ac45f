"""The zoo is the only registry: every entry has a tiny test model, and every tiny model maps back to its entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from trt_embed.errors import UnsupportedArchitecture
from trt_embed.zoo import load_zoo, zoo_entry

ENTRIES = sorted(load_zoo())


@pytest.mark.parametrize("architecture", ENTRIES)
def test_entry_has_tiny_model(architecture: str) -> None:
    entry = zoo_entry(architecture)
    assert {"config_class", "model_class", "config"} <= set(entry.tiny), f"{architecture} lacks a tiny test model"
    assert entry.default_pooling in {"cls", "mean", "max", "last", "mean_sqrt_len", "weightedmean"}


@pytest.mark.parametrize("architecture", ENTRIES)
def test_tiny_model_maps_back_to_its_entry(architecture: str, tiny_model: Callable[[str], Path]) -> None:
    saved = json.loads((tiny_model(architecture) / "config.json").read_text())
    assert saved["architectures"] == [architecture]
    assert zoo_entry(saved["architectures"][0]) is zoo_entry(architecture)


def test_unknown_architecture_lists_supported() -> None:
    with pytest.raises(UnsupportedArchitecture, match="BertModel"):
        zoo_entry("NoSuchModelForAnything")

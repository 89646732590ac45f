"""Reads `model_zoo.yaml`, the single registry of supported architectures."""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import Any

from trt_embed.errors import UnsupportedArchitecture


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    architecture: str
    family: str
    loader: str
    default_pooling: str
    token_type_ids: bool
    ort_fusion: str | None
    padding_side: str
    tiny: dict[str, Any]
    # Family-specific export settings (decoder family: attention, include_prompt, prompts, append_eos, matryoshka).
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)


@functools.cache
def load_zoo() -> dict[str, ZooEntry]:
    import yaml

    text = resources.files("trt_embed").joinpath("model_zoo.yaml").read_text()
    raw = yaml.safe_load(text)["architectures"]
    return {name: ZooEntry(architecture=name, **fields) for name, fields in raw.items()}


def zoo_entry(architecture: str) -> ZooEntry:
    zoo = load_zoo()
    if architecture not in zoo:
        supported = ", ".join(sorted(zoo))
        raise UnsupportedArchitecture(
            f"architecture {architecture!r} is not supported. Supported: {supported}. "
            "Check `config.json` -> `architectures`, or export a supported base class."
        )
    return zoo[architecture]

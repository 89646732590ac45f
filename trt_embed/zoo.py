"""Reads `model_zoo.yaml`, the single registry of supported architectures."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection
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
    # Optional, for architectures whose hub configs need them (see the comments in model_zoo.yaml).
    subtypes: dict[str, str] = dataclasses.field(default_factory=dict)
    config_aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    matryoshka_transform: str | None = None
    file_subtypes: dict[str, str] = dataclasses.field(default_factory=dict)
    # Family-specific export settings (decoder family: attention, include_prompt, prompts, append_eos, matryoshka).
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)


@functools.cache
def load_zoo() -> dict[str, ZooEntry]:
    import yaml

    text = resources.files("trt_embed").joinpath("model_zoo.yaml").read_text()
    raw = yaml.safe_load(text)["architectures"]
    return {name: ZooEntry(architecture=name, **fields) for name, fields in raw.items()}


def architecture_of(config: dict[str, Any], files: Collection[str] = ()) -> str:
    """The zoo key for a checkpoint's `config.json`: the remote-code class its `auto_map` names for AutoModel
    when the zoo has an entry for it (jina-v3 says `XLMRobertaModel` but is `XLMRobertaLoRA`), otherwise
    `architectures[0]`; then the entry's `subtypes` pick a more specific entry by a config key that is set, and
    its `file_subtypes` by a file among `files` (the names beside the weights)."""
    zoo = load_zoo()
    remote = str((config.get("auto_map") or {}).get("AutoModel", "")).rsplit(".", 1)[-1]
    architectures = config.get("architectures") or [""]
    name = remote if remote in zoo else str(architectures[0])
    if name in zoo:
        entry = zoo[name]
        name = next((sub for key, sub in entry.subtypes.items() if config.get(key)), name)
        name = next((sub for file, sub in entry.file_subtypes.items() if file in files), name)
    return name


def zoo_entry(architecture: str) -> ZooEntry:
    zoo = load_zoo()
    if architecture not in zoo:
        supported = ", ".join(sorted(zoo))
        raise UnsupportedArchitecture(
            f"architecture {architecture!r} is not supported. Supported: {supported}. "
            "Check `config.json` -> `architectures`, or export a supported base class."
        )
    return zoo[architecture]

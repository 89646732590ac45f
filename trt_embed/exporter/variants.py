"""Named variants (LoRA adapters merged into the base weights) and calibration data for int8 outputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.errors import ExportError, MissingDependency
from trt_embed.exporter.graph import EmbeddingGraph

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
VARIANT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def adapter_hash(adapter_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        path = adapter_dir / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def check_adapter(name: str, adapter_dir: Path) -> None:
    """Fail before any export work if a `--lora NAME=DIR` argument cannot work."""
    if not name or not set(name) <= VARIANT_NAME_CHARS or name == "base":
        raise ExportError(f"LoRA variant name {name!r} must be non-empty, not 'base', and use [A-Za-z0-9._-] only")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ExportError(f"{adapter_dir} is not a PEFT adapter directory (adapter_config.json is missing)")


def merged_lora_graph(
    build_graph: Callable[[], EmbeddingGraph], adapter_dir: Path, name: str
) -> tuple[EmbeddingGraph, dict[str, Any]]:
    """A fresh copy of the graph with the PEFT adapter in `adapter_dir` merged into its encoder."""
    check_adapter(name, adapter_dir)
    try:
        from peft import PeftModel
    except ImportError:
        raise MissingDependency("peft", "export") from None
    graph = build_graph()
    try:
        peft_model = PeftModel.from_pretrained(graph.encoder, str(adapter_dir))
    except Exception as exc:
        raise ExportError(f"LoRA adapter {adapter_dir} does not fit this model: {exc}") from exc
    graph.encoder = peft_model.merge_and_unload().eval()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    info = {
        "path_name": adapter_dir.name,
        "sha256": adapter_hash(adapter_dir),
        "peft_type": config.get("peft_type"),
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "target_modules": config.get("target_modules"),
    }
    return graph, info


def calibration_ranges(pooled: np.ndarray, matryoshka: list[int] | None) -> dict[str, Any]:
    """Per-dimension [min, max] of the calibration embeddings, for int8/uint8 output encodings.

    Keys are `"<dims>"` for L2-normalized vectors and `"<dims>:raw"` for unnormalized ones; one pair for the
    full dimension and one for each listed Matryoshka dimension.
    """
    full = pooled.shape[-1]
    dims = sorted({full, *(matryoshka or [])})
    ranges: dict[str, list[list[float]]] = {}
    for d in dims:
        raw = pooled[:, :d]
        normalized = raw / np.maximum(np.linalg.norm(raw, axis=-1, keepdims=True), 1e-12)
        for key, values in ((f"{d}", normalized), (f"{d}:raw", raw)):
            ranges[key] = [
                [round(float(v), 6) for v in values.min(axis=0)],
                [round(float(v), 6) for v in values.max(axis=0)],
            ]
    return {"texts": int(pooled.shape[0]), "ranges": ranges}

"""Inference-free SPLADE's query side: sentence-transformers' `SparseStaticEmbedding` (a weight per vocabulary
token, from its saved `weight` or an `idf.json` of token -> weight) as a [vocab] float32 table in the artifact.

A query's sparse vector is that table at the query's tokens (tokenized without special tokens), which the
runtime applies with NumPy (runtime/routes/query_table.py): no graph, no engine call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.errors import ExportError
from trt_embed.exporter.source import optional_json
from trt_embed.manifest import sha256_file

TABLE_FILE = "query_weights.npy"


def query_weights(module_dir: Path, tokenizer_dir: Path, vocab_size: int) -> npt.NDArray[np.float32]:
    """The SparseStaticEmbedding in `module_dir` as a [vocab_size] table over the artifact's tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    _check_same_vocabulary(module_dir, tokenizer.get_vocab())
    config = optional_json(module_dir / "config.json")
    idf = _idf_path(module_dir, config)
    table = _table_from_idf(idf, tokenizer) if idf is not None else _table_from_weights(module_dir)
    if table.ndim != 1 or len(table) > vocab_size:
        raise ExportError(
            f"{module_dir}: the query weights have shape {list(table.shape)}; expected [vocab] with at most the "
            f"document model's {vocab_size} entries"
        )
    full = np.zeros(vocab_size, dtype=np.float32)  # the MLM's vocabulary may be padded beyond the tokenizer's
    full[: len(table)] = table
    return full


def save_query_table(module_dir: Path, out: Path, vocab_size: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the table into the artifact; returns the manifest's head_config entry and the file's sha256."""
    table = query_weights(module_dir, out / "tokenizer", vocab_size)
    np.save(out / TABLE_FILE, table)
    config = {"query_weights": TABLE_FILE, "query_add_special_tokens": False}
    return config, {TABLE_FILE: sha256_file(out / TABLE_FILE)}


def _idf_path(module_dir: Path, config: dict[str, Any]) -> Path | None:
    """An `idf.json` the module is built from: named by its config's `path`, or lying in its folder without
    saved weights."""
    named = config.get("path")
    if isinstance(named, str) and named.endswith(".json"):
        for candidate in (module_dir / named, module_dir.parent / named, Path(named)):
            if candidate.is_file():
                return candidate
        raise ExportError(f"{module_dir}/config.json names the weight table {named!r}, which is not there")
    has_weights = any((module_dir / n).is_file() for n in ("model.safetensors", "pytorch_model.bin"))
    return module_dir / "idf.json" if not has_weights and (module_dir / "idf.json").is_file() else None


def _table_from_idf(path: Path, tokenizer: Any) -> npt.NDArray[np.float32]:
    """token -> weight, as sentence-transformers' `SparseStaticEmbedding.from_json` reads it: a token the
    vocabulary lacks lands on the unknown token, as the tokenizer's `convert_tokens_to_ids` maps it."""
    idf: dict[str, float] = json.loads(path.read_text())
    vocab = tokenizer.get_vocab()
    table = np.zeros(len(vocab), dtype=np.float32)
    unk = _unknown_id(tokenizer)
    for token, weight in idf.items():
        token_id = vocab.get(token, unk)
        if token_id is None:
            raise ExportError(
                f"{path}: token {token!r} is not in the tokenizer's vocabulary, which has no unknown token"
            )
        table[token_id] = float(weight)
    return table


def _unknown_id(tokenizer: Any) -> int | None:
    model = json.loads(tokenizer.to_str()).get("model", {})
    unk = model.get("unk_token")
    return tokenizer.token_to_id(unk) if isinstance(unk, str) else None


def _table_from_weights(module_dir: Path) -> npt.NDArray[np.float32]:
    """The module's saved `weight` parameter (model.safetensors, or pytorch_model.bin)."""
    import torch

    if (module_dir / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(module_dir / "model.safetensors"))
    elif (module_dir / "pytorch_model.bin").is_file():
        state = torch.load(module_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ExportError(
            f"{module_dir}: a SparseStaticEmbedding needs its weights (model.safetensors) or an idf.json; "
            "neither is there"
        )
    if "weight" not in state:
        raise ExportError(f"{module_dir}: the saved SparseStaticEmbedding has no `weight` (found {sorted(state)})")
    return np.asarray(state["weight"].float().numpy(), dtype=np.float32)


def _check_same_vocabulary(module_dir: Path, vocab: dict[str, int]) -> None:
    """The query route tokenizes with its own tokenizer; the artifact has one, the document model's."""
    from tokenizers import Tokenizer

    own = module_dir / "tokenizer.json"
    if own.is_file() and Tokenizer.from_file(str(own)).get_vocab() != vocab:
        raise ExportError(
            f"{own}: the query route's tokenizer has another vocabulary than the document model's; an artifact "
            "serves one tokenizer, so this model cannot be exported"
        )

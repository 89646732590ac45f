"""Stanford ColBERT checkpoints (colbert-ir/colbertv2.0: `HF_ColBERT` in config.json, BERT weights under `bert.`,
`linear.weight` [dim, hidden] without bias, `artifact.metadata` with ColBERT's settings) as a multi-vector model.

ColBERT's encoding, in the terms our multi-vector path already has:
- markers: ColBERT tokenizes ". " + text and overwrites the "." (position 1) with the query or document marker
  token ([unused0] / [unused1]); here the marker is made a special token of the artifact's tokenizer and is
  the "query" / "document" prompt, which puts the same id at the same place.
- queries: cut to `query_maxlen`, then padded to it with [MASK] (unattended unless `attend_to_mask_tokens`),
  every position kept: the fixed query expansion of `multi_vector_config`.
- documents: cut to `doc_maxlen`; padding and, with `mask_punctuation`, punctuation tokens dropped: the skiplist.
- every vector L2-normalized (`similarity: cosine`); MaxSim sums the best match of each query vector.
"""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path
from typing import Any

from trt_embed.errors import ExportError
from trt_embed.exporter.source import DenseLayer, SentenceTransformerConfig, optional_json

# ColBERT's defaults (colbert/infra/config/settings.py) for keys an artifact.metadata leaves out.
DEFAULTS: dict[str, Any] = {
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
    "query_maxlen": 32,
    "doc_maxlen": 180,
    "dim": 128,
    "similarity": "cosine",
    "mask_punctuation": True,
    "attend_to_mask_tokens": False,
}


def colbert_settings(model_dir: Path) -> dict[str, Any]:
    """artifact.metadata over ColBERT's defaults; settings this exporter cannot honour are refused."""
    path = model_dir / "artifact.metadata"
    saved = optional_json(path)
    settings = {**DEFAULTS, **{k: v for k, v in saved.items() if k in DEFAULTS and v is not None}}
    if settings["similarity"] != "cosine":
        raise ExportError(
            f"{path}: ColBERT similarity {settings['similarity']!r} is not supported; cosine (MaxSim over normalized "
            "vectors) is"
        )
    return settings


def colbert_config(st: SentenceTransformerConfig, model_dir: Path, hidden_size: int) -> SentenceTransformerConfig:
    """What the checkpoint means as a multi-vector model: the `linear` projection as a token-level Dense layer,
    the markers as query/document prompts (documents by default), expansion, skiplist and lengths."""
    settings = colbert_settings(model_dir)
    projection = DenseLayer(
        directory=model_dir,  # its state's `linear.weight`; the `bert.` weights are the encoder's
        in_features=hidden_size,
        out_features=int(settings["dim"]),
        bias=False,
        activation="identity",
        tokens=True,
    )
    multi_vector = {
        "skiplist_words": list(string.punctuation) if settings["mask_punctuation"] else [],
        "skiplist_tasks": ["document"],
        "query_length": int(settings["query_maxlen"]),
        "document_length": int(settings["doc_maxlen"]),
        "query_expansion": {
            "strategy": "fixed",
            "length": int(settings["query_maxlen"]),
            "attend": bool(settings["attend_to_mask_tokens"]),
        },
        "normalize": True,
    }
    return dataclasses.replace(
        st,
        dense=[projection],
        multi_vector=multi_vector,
        prompts={"query": f"{settings['query_token_id']} ", "document": f"{settings['doc_token_id']} "},
        default_prompt_name="document",
    )


def mark_special(tokenizer_dir: Path, model_dir: Path) -> None:
    """Make the marker tokens single special tokens of the artifact's tokenizer (they are vocabulary entries
    that the BERT pre-tokenizer would otherwise split at the brackets)."""
    from tokenizers import AddedToken, Tokenizer

    settings = colbert_settings(model_dir)
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    markers = [str(settings["query_token_id"]), str(settings["doc_token_id"])]
    missing = [m for m in markers if tokenizer.token_to_id(m) is None]
    if missing:
        raise ExportError(f"{model_dir}: the ColBERT marker tokens {missing} are not in the tokenizer's vocabulary")
    tokenizer.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in markers])
    tokenizer.save(str(tokenizer_dir / "tokenizer.json"))

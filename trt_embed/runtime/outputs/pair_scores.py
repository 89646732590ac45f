"""Scores from reranker and classifier logits (pure numpy): the activations sentence-transformers' CrossEncoder
applies, class probabilities for /classify, and the yes/no softmax of LLM rerankers."""

from __future__ import annotations

from typing import Literal

import numpy as np

from trt_embed.errors import ArtifactError

Activation = Literal["sigmoid", "softmax", "identity"]
ACTIVATIONS = ("sigmoid", "softmax", "identity")


def default_activation(num_labels: int, configured: str | None = None) -> Activation:
    """The activation CrossEncoder uses: the configured torch.nn class path, else Sigmoid for one label and
    Identity for several."""
    if configured:
        name = configured.rsplit(".", 1)[-1].lower()
        if name in ACTIVATIONS:
            return name  # type: ignore[return-value]
        raise ArtifactError(f"activation {configured!r} is not supported: use Sigmoid, Softmax or Identity")
    return "sigmoid" if num_labels == 1 else "identity"


def classifier_activation(num_labels: int, problem_type: str | None) -> Activation:
    """Class probabilities for a sequence classifier: sigmoid per label when multi-label (or one label),
    softmax over the labels otherwise (transformers' problem_type)."""
    if num_labels == 1 or problem_type == "multi_label_classification":
        return "sigmoid"
    return "softmax"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e: np.ndarray = np.exp(x - x.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def scores(logits: np.ndarray, activation: Activation) -> np.ndarray:
    """[B] scores for one label, [B, num_labels] for several, as CrossEncoder.predict returns them."""
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if activation == "sigmoid":
        x = _sigmoid(x)
    elif activation == "softmax":
        x = _softmax(x)
    elif activation != "identity":
        raise ValueError(f"unknown activation {activation!r}")
    return x[:, 0] if x.shape[1] == 1 else x


def yes_no_score(no_logits: np.ndarray, yes_logits: np.ndarray) -> np.ndarray:
    """Qwen3-Reranker's score: softmax over the ("no", "yes") logits at the last position, the "yes" probability."""
    pair = np.stack([np.asarray(no_logits, np.float32), np.asarray(yes_logits, np.float32)], axis=-1)
    return _softmax(pair)[..., 1]

"""jina-embeddings-v3 (jinaai/xlm-roberta-flash-implementation `XLMRobertaLoRA`), without the remote code.

The encoder is the rotary post-norm BERT of `rotary_bert` (GELU MLP, biases); every Linear and Embedding
carries one LoRA adapter per task (`lora_adaptations`). Each task is exported as a named variant with its
adapter merged: Linear `W + s * B[t] @ A[t]`, Embedding `E + s * A[t] @ B[t]`, `s = lora_alpha / lora_rank`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from trt_embed.exporter.models.layers import load_exact, load_weights, read_config, require, strip_prefix
from trt_embed.exporter.models.rotary_bert import RotaryBert, RotaryBertConfig
from trt_embed.zoo import ZooEntry

_IGNORED = ("pooler.", "lm_head.", "classifier.")
_ORIGINAL = ".parametrizations.weight.original"
_LORA = ".parametrizations.weight.0.lora_"


def jina_config(config: dict[str, Any], state: dict[str, torch.Tensor], where: Path) -> RotaryBertConfig:
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    require(config.get("position_embedding_type") == "rotary", where, "only rotary jina-embeddings-v3 is supported")
    require(config.get("hidden_act", "gelu") == "gelu", where, "only hidden_act gelu is supported")
    return RotaryBertConfig(
        vocab_size=int(state["embeddings.word_embeddings.weight"].shape[0]),
        hidden_size=hidden,
        num_layers=int(config["num_hidden_layers"]),
        num_heads=heads,
        intermediate_size=int(config["intermediate_size"]),
        type_vocab_size=int(config.get("type_vocab_size", 1)),
        activation="gelu",
        qkv_bias=True,
        fc1_bias=True,
        fc2_bias=True,
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-5)),
        rope_base=float(config.get("rotary_emb_base", 10000.0)),
        rotary_dim=hidden // heads,
    )


def split_lora(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, ...]]]:
    """Checkpoint -> (base weights named like plain modules, {module weight name: (lora_A, lora_B)})."""
    base: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        if name.endswith(_ORIGINAL):
            base[name.removesuffix(_ORIGINAL) + ".weight"] = tensor
        elif _LORA in name:
            module, part = name.split(_LORA)
            lora.setdefault(module + ".weight", {})[part] = tensor
        else:
            base[name] = tensor
    base = {k.replace(".mixer.", ".attn."): v for k, v in base.items()}  # jina's `mixer` is our `attn`
    pairs = {k.replace(".mixer.", ".attn."): (v["A"], v["B"]) for k, v in lora.items() if not k.startswith(_IGNORED)}
    return base, pairs


class JinaV3Encoder(RotaryBert):
    """A `RotaryBert` whose weights switch between tasks: `use_variant(task)` merges that task's LoRA,
    `use_variant(None)` restores the base weights (the model without adapters)."""

    def __init__(
        self,
        cfg: RotaryBertConfig,
        tasks: list[str],
        lora: dict[str, tuple[torch.Tensor, ...]],
        rank: int,
        alpha: float,
    ) -> None:
        super().__init__(cfg)
        self.tasks = tasks
        self.lora = lora
        self.rank = rank
        self.scaling = alpha / rank
        self.base: dict[str, torch.Tensor] = {}

    def keep_base(self) -> None:
        params = dict(self.named_parameters())
        self.base = {name: params[name].detach().clone() for name in self.lora}

    def variant_names(self) -> list[str]:
        return list(self.tasks)

    def use_variant(self, name: str | None) -> None:
        params = dict(self.named_parameters())
        with torch.no_grad():
            for weight, (a, b) in self.lora.items():
                merged = self.base[weight]
                if name is not None:
                    t = self.tasks.index(name)
                    embedding = isinstance(self.get_submodule(weight.removesuffix(".weight")), torch.nn.Embedding)
                    delta = a[t] @ b[t] if embedding else b[t] @ a[t]
                    merged = merged + self.scaling * delta
                params[weight].copy_(merged)

    def variant_record(self, name: str) -> dict[str, Any]:
        t = self.tasks.index(name)
        digest = hashlib.sha256()
        for weight in sorted(self.lora):
            for part in self.lora[weight]:
                digest.update(part[t].contiguous().numpy().tobytes())
        return {
            "source": "checkpoint lora_adaptations (merged)",
            "task_index": t,
            "rank": self.rank,
            "scaling": self.scaling,
            "sha256": digest.hexdigest(),
        }


def jina_v3_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """Zoo family `jina_v3`: the base model plus its task adapters, merged per variant at export."""
    config = read_config(model_dir)
    state = strip_prefix(load_weights(model_dir), "emb_ln.weight", ("roberta.",))
    base, lora = split_lora(state)
    tasks = [str(t) for t in config.get("lora_adaptations") or []]
    require(bool(tasks) == bool(lora), model_dir, "config lora_adaptations and the checkpoint's adapters disagree")
    for weight, (a, b) in lora.items():
        require(a.shape[0] == b.shape[0] == len(tasks), model_dir, f"{weight}: adapters for {a.shape[0]} tasks")
    cfg = jina_config(config, base, model_dir)
    model = JinaV3Encoder(cfg, tasks, lora, int(config.get("lora_rank", 4)), float(config.get("lora_alpha", 1)))
    load_exact(model, base, model_dir, ignore=_IGNORED)
    model.keep_base()
    return model.eval()

"""NomicBertModel (nomic-ai/nomic-bert-2048 hub code): dense SwiGLU (nomic-embed-text-v1/v1.5,
snowflake-arctic-embed-m-long) and MoE (nomic-embed-text-v2-moe) checkpoints, without the remote code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trt_embed.exporter.models.layers import load_exact, load_weights, read_config, require, strip_prefix
from trt_embed.exporter.models.rotary_bert import MoEConfig, RotaryBert, RotaryBertConfig
from trt_embed.zoo import ZooEntry

# Parts of NomicBert checkpoints the embedding graph does not use.
_IGNORED = ("pooler.", "lm_head.", "cls.", "classifier.")


def nomic_config(config: dict[str, Any], state: dict[str, torch.Tensor], where: Path) -> RotaryBertConfig:
    """Map the GPT-2 style hub config (`n_embd`, `n_head` ...) onto our config, refusing switches we do not
    reproduce rather than exporting a different model."""
    hidden, heads = int(config["n_embd"]), int(config["n_head"])
    require(not config.get("prenorm", False), where, "prenorm=true NomicBert is not supported (only post-norm)")
    require(not config.get("causal", False), where, "causal NomicBert is not an embedding model")
    require(not config.get("rotary_emb_interleaved", False), where, "interleaved rotary embeddings are not supported")
    require(not config.get("parallel_block", False), where, "parallel_block NomicBert is not supported")
    require(not config.get("use_rms_norm"), where, "use_rms_norm NomicBert is not supported")
    scaling = config.get("rotary_scaling_factor")  # dynamic NTK, only for batches longer than max_trained_positions
    activation = str(config.get("activation_function", "swiglu"))
    require(activation in ("swiglu", "gelu"), where, f"activation {activation!r} is not supported (swiglu, gelu)")
    moe = None
    if config.get("num_experts"):
        require(not config.get("expert_choice_router", False), where, "expert-choice MoE routing is not supported")
        require(not config.get("num_shared_experts"), where, "shared MoE experts are not supported")
        moe = MoEConfig(
            num_experts=int(config["num_experts"]),
            top_k=int(config.get("moe_top_k", 1)),
            every_n_layers=int(config.get("moe_every_n_layers", 1)),
            normalize_weights=bool(config.get("moe_normalize_expert_weights", False)),
        )
    fc1 = "encoder.layers.0.mlp.fc11.weight" if activation == "swiglu" else "encoder.layers.0.mlp.fc1.weight"
    require(fc1 in state, where, f"checkpoint lacks {fc1!r} for activation {activation!r}")
    return RotaryBertConfig(
        vocab_size=int(state["embeddings.word_embeddings.weight"].shape[0]),
        hidden_size=hidden,
        num_layers=int(config["n_layer"]),
        num_heads=heads,
        intermediate_size=int(state[fc1].shape[0]),  # the gated MLP rounds n_inner up: trust the weights
        type_vocab_size=int(config.get("type_vocab_size", 2)),
        activation=activation,
        qkv_bias=bool(config.get("qkv_proj_bias", True)),
        fc1_bias=bool(config.get("mlp_fc1_bias", True)),
        fc2_bias=bool(config.get("mlp_fc2_bias", True)),
        layer_norm_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        rope_base=float(config.get("rotary_emb_base", 10000.0)),
        rotary_dim=int(hidden // heads * float(config.get("rotary_emb_fraction", 1.0))),
        moe=moe,
        rope_scaling=(float(scaling), int(config.get("max_trained_positions", 2048))) if scaling else None,
    )


def nomic_bert_encoder(model_dir: Path, entry: ZooEntry, trust_remote_code: bool) -> torch.nn.Module:
    """Zoo family `nomic_bert`: build and load a NomicBertModel checkpoint (NomicBertForPreTraining's `bert.`
    prefix is stripped)."""
    state = strip_prefix(load_weights(model_dir), "emb_ln.weight", ("bert.", "model."))
    model = RotaryBert(nomic_config(read_config(model_dir), state, model_dir))
    load_exact(model, state, model_dir, ignore=_IGNORED)
    return model.eval()

"""Finds a model on disk and reads its sentence-transformers configuration, as sentence-transformers would."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from trt_embed.defaults import (
    cached_hub_model,
    default_model_dir,
    is_default_name,
    looks_like_hub_id,
    missing_model,
    model_name,
)
from trt_embed.errors import ExportError
from trt_embed.manifest import sha256_file

WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin")

# sentence-transformers pooling names -> ours
_ST_POOLING = {
    "cls": "cls",
    "mean": "mean",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weightedmean",
    "lasttoken": "last",
}
_ST_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "last",
}


@dataclasses.dataclass
class DenseLayer:
    """A sentence-transformers `Dense` module: linear projection plus activation."""

    directory: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # "identity" | "tanh" | "relu" | "gelu" | "sigmoid"
    tokens: bool = False  # applied to every token state (a multi-vector projection), not to the pooled vector


@dataclasses.dataclass
class SentenceTransformerConfig:
    """What the sentence-transformers files of a checkpoint say; None where they are silent."""

    transformer_dir: Path
    pooling: str | None = None
    include_prompt: bool = True
    dense: list[DenseLayer] = dataclasses.field(default_factory=list)
    normalize: bool | None = None
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    default_prompt_name: str | None = None
    splade: dict[str, Any] | None = None  # a SpladePooling module's config (pooling_strategy, activation_function)
    # a MultiVectorMask module's config (skiplist_words, skiplist_tasks) with the Transformer's query/document
    # lengths and query expansion (sentence-transformers' MultiVectorEncoder)
    multi_vector: dict[str, Any] | None = None
    # inference-free SPLADE (a Router whose query route is a SparseStaticEmbedding): that module's directory
    sparse_query: Path | None = None


def resolve_model_dir(model: str, revision: str | None = None) -> Path:
    """A local directory as is; otherwise a hub id looked up in the local Hugging Face cache only."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if is_default_name(model):  # `all-MiniLM-L6-v2`: the embedded default model
        return default_model_dir().resolve()
    if path.exists():
        raise ExportError(f"{model} is a file, not a model directory")
    if not looks_like_hub_id(model):
        raise missing_model(model)
    return cached_hub_model(model, revision)


def check_model_dir(directory: Path) -> dict[str, Any]:
    """Return `config.json`; raise a clear error if the directory lacks config or weights."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ExportError(
            f"{directory} has no config.json: it is not a Hugging Face model directory. "
            "Point to the folder that holds config.json and the weights."
        )
    if not any(any(directory.glob(p)) for p in WEIGHT_PATTERNS):
        raise ExportError(
            f"{directory} has no model weights (looked for {', '.join(WEIGHT_PATTERNS)}). "
            "The download may be incomplete: fetch the weights again."
        )
    has_tokenizer = (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file()
    if not has_tokenizer:
        raise ExportError(
            f"{directory} has no tokenizer (tokenizer.json or tokenizer_config.json). "
            "Save the tokenizer next to the model with `tokenizer.save_pretrained(DIR)`."
        )
    config: dict[str, Any] = json.loads(config_path.read_text())
    return config


def weight_files(directory: Path) -> list[Path]:
    for pattern in WEIGHT_PATTERNS:
        found = sorted(directory.glob(pattern))
        if found:
            return found
    return []


def source_record(model: str | Path, model_dir: Path, revision: str | None, weights_dir: Path) -> dict[str, Any]:
    """The manifest's `source`: the model as asked for, its folder's name, the revision and the sha256 of each
    weight file (in `weights_dir`: the transformer's folder of a sentence-transformers model)."""
    return {
        "model": str(model),
        "name": model_name(str(model), model_dir),  # served under this name
        "path_name": model_dir.name,
        "revision": revision,
        "weights_sha256": {p.name: sha256_file(p) for p in weight_files(weights_dir)},
    }


def optional_json(path: Path) -> dict[str, Any]:
    """A checkpoint's optional JSON file (a tokenizer or processor config), or {} when it has none."""
    return _read_json(path) if path.is_file() else {}


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _pooling_from_config(cfg: dict[str, Any], where: Path) -> tuple[str, bool]:
    mode = cfg.get("pooling_mode")
    if mode is not None:
        modes = [mode] if isinstance(mode, str) else list(mode)
    else:
        modes = [name for key, name in _ST_LEGACY_POOLING_KEYS.items() if cfg.get(key)]
        modes = [next(k for k, v in _ST_POOLING.items() if v == m) for m in modes]
    if len(modes) != 1:
        raise ExportError(
            f"{where}: pooling {modes!r} is not supported; exactly one pooling mode is "
            f"(one of {', '.join(_ST_POOLING)}). Override it with `--pooling`."
        )
    if modes[0] not in _ST_POOLING:
        raise ExportError(f"{where}: unknown pooling mode {modes[0]!r}; expected one of {', '.join(_ST_POOLING)}")
    return _ST_POOLING[modes[0]], bool(cfg.get("include_prompt", True))


def _splade_from_config(cfg: dict[str, Any]) -> dict[str, Any]:
    strategy = str(cfg.get("pooling_strategy", "max"))
    activation = str(cfg.get("activation_function", "relu"))
    if strategy not in ("max", "sum") or activation not in ("relu", "log1p_relu"):
        raise ExportError(
            f"SpladePooling {strategy!r}/{activation!r} is not supported: pooling_strategy must be max or sum, "
            "activation_function relu or log1p_relu"
        )
    return {"pooling_strategy": strategy, "activation_function": activation}


_ACTIVATIONS = {
    "identity": "identity",
    "tanh": "tanh",
    "relu": "relu",
    "gelu": "gelu",
    "sigmoid": "sigmoid",
}


def _dense_from_dir(directory: Path) -> DenseLayer:
    cfg = _read_json(directory / "config.json")
    raw = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
    short = raw.rsplit(".", 1)[-1].lower()
    if short not in _ACTIVATIONS:
        raise ExportError(f"{directory}: Dense activation {raw!r} is not supported ({', '.join(_ACTIVATIONS)})")
    return DenseLayer(
        directory=directory,
        in_features=int(cfg["in_features"]),
        out_features=int(cfg["out_features"]),
        bias=bool(cfg.get("bias", True)),
        activation=short,
        tokens=cfg.get("module_input_name") == "token_embeddings",
    )


def read_sentence_transformers(directory: Path) -> SentenceTransformerConfig:
    """Read modules.json and the module configs the way sentence-transformers loads them."""
    st = SentenceTransformerConfig(transformer_dir=directory)
    modules_path = directory / "modules.json"
    modules: list[dict[str, Any]] = json.loads(modules_path.read_text()) if modules_path.is_file() else []
    for module in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        sub = directory / str(module.get("path", ""))
        if kind == "Router":
            _read_router(st, sub)
        else:
            _read_module(st, kind, sub, modules_path)
    if modules and st.normalize is None:
        st.normalize = False
    _read_bert_config(st, directory)
    prompts_path = directory / "config_sentence_transformers.json"
    if prompts_path.is_file():
        cfg = _read_json(prompts_path)
        st.prompts = {str(k): str(v) for k, v in (cfg.get("prompts") or {}).items()}
        st.default_prompt_name = cfg.get("default_prompt_name")
    return st


def _read_router(st: SentenceTransformerConfig, directory: Path) -> None:
    """sentence-transformers' Router as inference-free SPLADE saves it (opensearch-neural-sparse-encoding-doc-v3
    -distill): a "query" route of one SparseStaticEmbedding (a weight per vocabulary token) and a "document"
    route of MLMTransformer + SpladePooling, each module in its own folder named by its id."""
    config = _read_json(directory / "router_config.json")
    types = {str(k): str(v).rsplit(".", 1)[-1] for k, v in (config.get("types") or {}).items()}
    routes: dict[str, list[str]] = {str(k): list(v) for k, v in (config.get("structure") or {}).items()}
    query, document = routes.get("query", []), routes.get("document", [])
    if set(routes) != {"query", "document"} or [types.get(m) for m in query] != ["SparseStaticEmbedding"]:
        shape = {name: [types.get(m, m) for m in ids] for name, ids in routes.items()}
        raise ExportError(
            f"{directory / 'router_config.json'}: Router routes {shape} are not supported; supported is inference-"
            "free SPLADE: a query route of one SparseStaticEmbedding and a document route of MLMTransformer + "
            "SpladePooling"
        )
    for module_id in document:
        _read_module(st, types.get(module_id, ""), directory / module_id, directory / "router_config.json")
    if st.splade is None:
        raise ExportError(f"{directory / 'router_config.json'}: the document route has no SpladePooling module")
    st.sparse_query = directory / query[0]


def _read_module(st: SentenceTransformerConfig, kind: str, sub: Path, modules_path: Path) -> None:
    """One sentence-transformers module (its class name, its folder) into `st`."""
    if kind in ("Transformer", "MLMTransformer"):
        st.transformer_dir = sub if (sub / "config.json").is_file() else modules_path.parent
    elif kind == "Pooling":
        st.pooling, st.include_prompt = _pooling_from_config(_read_json(sub / "config.json"), sub)
    elif kind == "Dense":
        st.dense.append(_dense_from_dir(sub))
    elif kind == "Normalize":
        st.normalize = True
    elif kind == "CLIPModel":  # sentence-transformers' CLIP wrapper (clip-ViT-B-32): the HF checkpoint in `path`
        st.transformer_dir = sub if (sub / "config.json").is_file() else modules_path.parent
    elif kind == "MultiVectorMask":
        mask_config = sub / "config.json"
        st.multi_vector = _read_json(mask_config) if mask_config.is_file() else {}
    elif kind == "SpladePooling":
        st.splade = _splade_from_config(_read_json(sub / "config.json") if (sub / "config.json").is_file() else {})
    else:
        raise ExportError(
            f"{modules_path}: sentence-transformers module {kind!r} is not supported "
            "(supported: Transformer, MLMTransformer, Pooling, SpladePooling, MultiVectorMask, Dense, Normalize, "
            "CLIPModel, and a Router of SparseStaticEmbedding / MLMTransformer + SpladePooling)"
        )


def _read_bert_config(st: SentenceTransformerConfig, directory: Path) -> None:
    """The Transformer module's sentence_bert_config.json: max_seq_length, do_lower_case, multi-vector lengths."""
    for name in ("sentence_bert_config.json", "sentence_roberta_config.json", "sentence_xlnet_config.json"):
        path = st.transformer_dir / name
        if not path.is_file():
            path = directory / name
        if path.is_file():
            cfg = _read_json(path)
            if cfg.get("max_seq_length") is not None:
                st.max_seq_length = int(cfg["max_seq_length"])
            st.do_lower_case = bool(cfg.get("do_lower_case", False))
            if st.multi_vector is not None:
                keys = ("query_length", "document_length", "query_expansion")
                st.multi_vector.update({key: cfg.get(key) for key in keys})
            break

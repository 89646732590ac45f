"""Tiny random-weight models built from each zoo entry's config class, saved like hub checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from trt_embed.zoo import ZooEntry

# Checkpoints saved by the original remote code, with reference outputs (see its README).
GOLDEN = Path(__file__).resolve().parent / "golden"

WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "and",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "that",
    "this",
    "be",
    "are",
    "or",
    "not",
    "have",
    "has",
    "had",
    "one",
    "two",
    "three",
    "model",
    "text",
    "query",
    "document",
    "search",
    "embedding",
    "vector",
    "token",
    "layer",
    "weight",
    "train",
    "test",
    "cat",
    "dog",
    "house",
    "river",
    "city",
    "music",
    "light",
    "water",
    "paper",
    "green",
    "blue",
    "small",
    "large",
    "fast",
    "slow",
    "read",
    "write",
    "hello",
    "world",
    "how",
    "what",
    "why",
    "when",
    "where",
    "who",
    "which",
    "day",
    "night",
    "time",
    "year",
    "people",
    "language",
    "computer",
]


def _special_names(config: dict[str, Any]) -> dict[str, str]:
    if config.get("pad_token_id") == 1:  # RoBERTa layout: <s>=0 <pad>=1 </s>=2 <unk>=3
        return {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}
    return {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}


def _special_ids(config: dict[str, Any]) -> dict[str, int]:
    if config.get("pad_token_id") == 1:
        return {"cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": 4}
    pad = config.get("pad_token_id", 0)
    cls = config.get("cls_token_id", config.get("bos_token_id", 101 if pad != 0 else 1))
    sep = config.get("sep_token_id", config.get("eos_token_id", 2))
    ids = {"pad": pad, "cls": cls, "sep": sep}
    free = (i for i in range(10) if i not in ids.values())
    ids["unk"] = next(free)
    ids["mask"] = next(free)
    return ids


def tiny_tokenizer(
    config: dict[str, Any], vocab_size: int, template: str | None = None, added: dict[str, int] | None = None
) -> Tokenizer:
    """A WordPiece tokenizer whose special-token ids match the model config; `template` overrides the
    single-input template (decoders: e.g. "[CLS] $A" for BOS only, "$A [SEP]" for EOS only); `added` are more
    special tokens with their ids (a VLM's image placeholder and chat markers)."""
    names, ids = _special_names(config), _special_ids(config)
    vocab: dict[str, int] = {names[k]: ids[k] for k in names}
    vocab.update(added or {})
    pieces = [*WORDS, *"abcdefghijklmnopqrstuvwxyz0123456789", *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    pieces += [".", ",", "?", "!", "-", "'"]
    next_id = 0
    for piece in pieces:
        while next_id in vocab.values():
            next_id += 1
        if piece not in vocab and next_id < vocab_size:
            vocab[piece] = next_id
            next_id += 1
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=names["unk"], max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = names["cls"], names["sep"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template or f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids["cls"]), (sep, ids["sep"])],
    )
    if added:
        tokenizer.add_special_tokens(list(added))
    return tokenizer


def make_tiny_model(entry: ZooEntry, directory: Path, seed: int = 0) -> Path:
    """Save a random-weight model of `entry`'s architecture with a matching tokenizer into `directory`."""
    if "golden" in entry.tiny:
        return golden_tiny_model(entry.tiny, directory)
    import torch
    import transformers

    from trt_embed.exporter.models.decoder import resolve_class

    torch.manual_seed(seed)
    tiny = entry.tiny
    config = getattr(transformers, tiny["config_class"])(**tiny["config"])
    model = resolve_class(tiny["model_class"])(config).eval()
    with torch.no_grad():  # larger-than-init weights so that errors are not hidden by tiny activations
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.1)
            elif "norm" in name.lower() and name.endswith("weight"):
                param.normal_(1.0, 0.1)
            else:
                param.normal_(0.0, 0.05)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    saved = json.loads((directory / "config.json").read_text())  # the entry's name, also for classes we build
    saved.update({"architectures": [entry.architecture], **tiny.get("config_json", {})})
    (directory / "config.json").write_text(json.dumps(saved, indent=2))
    text_config = {**tiny["config"], **tiny["config"].get("text_config", {})}  # two-tower: the text tower's ids
    save_tiny_tokenizer(text_config, directory, tiny.get("tokenizer", {}))
    if "preprocessor" in tiny:  # two-tower: the image processor's config
        (directory / "preprocessor_config.json").write_text(json.dumps(tiny["preprocessor"]))
    if "st_modules" in tiny:
        save_st_modules(tiny["st_modules"], model, directory)
    return directory


def save_st_modules(kind: str, model: Any, directory: Path) -> None:
    """The files beside the weights that make a checkpoint SPLADE or bge-m3, as the hub repositories have them:
    `splade`: sentence-transformers' MLMTransformer + SpladePooling modules; `bge_m3`: BAAI's `sparse_linear.pt`
    and `colbert_linear.pt` (`torch.save(linear.state_dict())`) and its Transformer/Pooling(cls)/Normalize modules."""
    import torch

    def module(idx: int, path: str, kind: str) -> dict[str, Any]:
        return {"idx": idx, "name": str(idx), "path": path, "type": f"sentence_transformers.{kind}"}

    if kind == "splade":
        modules = [
            module(0, "", "sparse_encoder.modules.MLMTransformer"),
            module(1, "1_SpladePooling", "sparse_encoder.modules.SpladePooling"),
        ]
        (directory / "1_SpladePooling").mkdir()
        vocab = model.config.vocab_size
        pooling = {"pooling_strategy": "max", "activation_function": "relu", "word_embedding_dimension": vocab}
        (directory / "1_SpladePooling" / "config.json").write_text(json.dumps(pooling))
        st_config = {"model_type": "SparseEncoder", "similarity_fn_name": "dot", "prompts": {}}
        (directory / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    elif kind == "bge_m3":
        hidden = model.config.hidden_size
        torch.save(torch.nn.Linear(hidden, 1).state_dict(), directory / "sparse_linear.pt")
        torch.save(torch.nn.Linear(hidden, hidden).state_dict(), directory / "colbert_linear.pt")
        modules = [
            module(0, "", "models.Transformer"),
            module(1, "1_Pooling", "models.Pooling"),
            module(2, "2_Normalize", "models.Normalize"),
        ]
        (directory / "1_Pooling").mkdir()
        (directory / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
        tok_config = json.loads((directory / "tokenizer_config.json").read_text())  # as XLM-R's names them
        tok_config.update({"bos_token": "<s>", "eos_token": "</s>"})
        (directory / "tokenizer_config.json").write_text(json.dumps(tok_config))
    elif kind == "colbert":
        save_colbert(model, directory)
        return
    else:
        raise ValueError(f"unknown st_modules {kind!r}")
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 96, "do_lower_case": False}))


def save_colbert(model: Any, directory: Path, dim: int = 24) -> None:
    """As colbert-ir/colbertv2.0 is saved by ColBERT's `HF_ColBERT`: the BERT weights under `bert.`, the
    projection as `linear.weight` [dim, hidden] without bias, ColBERT's settings in `artifact.metadata`, and a
    BERT vocabulary that has the [unused0]/[unused1] markers and every ASCII punctuation character."""
    import string

    import torch
    from safetensors.torch import load_file, save_file

    state = {f"bert.{k}": v for k, v in load_file(str(directory / "model.safetensors")).items()}
    state["linear.weight"] = torch.randn(dim, model.config.hidden_size) * 0.2
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    metadata = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_token": "[Q]",
        "doc_token": "[D]",
        "query_maxlen": 12,
        "doc_maxlen": 20,
        "dim": dim,
        "similarity": "cosine",
        "mask_punctuation": True,
        "attend_to_mask_tokens": False,
        "interaction": "colbert",
    }
    (directory / "artifact.metadata").write_text(json.dumps(metadata, indent=4))
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    for token in ["[unused0]", "[unused1]", *string.punctuation]:
        if token not in vocab:
            vocab[token] = max(vocab.values()) + 1
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))


def golden_tiny_model(tiny: dict[str, Any], directory: Path) -> Path:
    """Copy the golden checkpoint `tiny["golden"]` and add a tiny tokenizer with its special-token ids."""
    source = GOLDEN / tiny["golden"] / "model"
    if not source.is_dir():
        raise FileNotFoundError(f"golden checkpoint {source} is missing (see tests/golden/PROVENANCE.md)")
    shutil.copytree(source, directory, dirs_exist_ok=True)
    config = json.loads((source / "config.json").read_text())
    tok = tiny.get("tokenizer", {})
    save_tiny_tokenizer({**config, **tok}, directory, tok)
    return directory


def save_tiny_tokenizer(config: dict[str, Any], directory: Path, tok: dict[str, Any]) -> None:
    """`tok`: optional `template` (single-input template) and `padding_side` of the saved tokenizer."""
    tokenizer = tiny_tokenizer(config, config["vocab_size"], tok.get("template"), tok.get("added"))
    tokenizer.save(str(directory / "tokenizer.json"))
    names = _special_names(config)
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 512,
        "pad_token": names["pad"],
        "cls_token": names["cls"],
        "sep_token": names["sep"],
        "unk_token": names["unk"],
        "mask_token": names["mask"],
        **({"padding_side": tok["padding_side"]} if "padding_side" in tok else {}),
        **({"model_input_names": tok["model_input_names"]} if "model_input_names" in tok else {}),
        **({"chat_template": tok["chat_template"]} if "chat_template" in tok else {}),
        **tok.get("config", {}),  # more tokenizer_config.json keys (e.g. the bos_token a chat template writes)
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config))

"""Puts a fast tokenizer (`tokenizer.json`) into the artifact, converting slow tokenizers once at export."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from trt_embed.errors import ExportError
from trt_embed.exporter.source import optional_json
from trt_embed.manifest import TokenizerInfo, sha256_file

_COPIED = ("tokenizer_config.json", "special_tokens_map.json")


def tokenizer_to_artifact(
    model_dir: Path, out_dir: Path, *, model_config: dict[str, Any], padding_side: str, do_lower_case: bool
) -> TokenizerInfo:
    """Write `tokenizer/` into the artifact and describe it for the manifest."""
    target = out_dir / "tokenizer"
    target.mkdir(parents=True, exist_ok=True)
    tok_config = optional_json(model_dir / "tokenizer_config.json")

    if (model_dir / "tokenizer.json").is_file():
        shutil.copyfile(model_dir / "tokenizer.json", target / "tokenizer.json")
    else:
        _convert_slow_tokenizer(model_dir, target)
    for name in _COPIED:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, target / name)

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(target / "tokenizer.json"))
    pad_id = _pad_token_id(tokenizer, tok_config, model_config)
    max_len = tok_config.get("model_max_length")
    return TokenizerInfo(
        directory="tokenizer",
        do_lower_case=do_lower_case,
        padding_side=str(tok_config.get("padding_side", padding_side)),
        pad_token_id=pad_id,
        model_max_length=int(max_len) if isinstance(max_len, int | float) and max_len < 1e7 else None,
    )


def tokenizer_hashes(out_dir: Path, info: TokenizerInfo) -> dict[str, str]:
    """The manifest's `files`: every file of the artifact's tokenizer directory (relative path -> sha256), taken
    once the tokenizer is final. The runtime refuses a tokenizer file that is missing, changed or unlisted."""
    directory = out_dir / info.directory
    return {
        path.relative_to(out_dir).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _convert_slow_tokenizer(model_dir: Path, target: Path) -> None:
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    except Exception as exc:
        raise ExportError(f"{model_dir}: the tokenizer cannot be loaded ({exc})") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{model_dir}: no fast tokenizer can be made from this tokenizer; save a tokenizer.json")
    tokenizer.backend_tokenizer.save(str(target / "tokenizer.json"))


def _pad_token_id(tokenizer: Any, tok_config: dict[str, Any], model_config: dict[str, Any]) -> int:
    pad = tok_config.get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    if isinstance(pad, str) and tokenizer.token_to_id(pad) is not None:
        return int(tokenizer.token_to_id(pad))
    padding = tokenizer.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    if model_config.get("pad_token_id") is not None:
        return int(model_config["pad_token_id"])
    return 0

"""What a zoo entry's `recipe` adds to an export, and `--convert embed` for architectures not in the zoo."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from trt_embed.errors import ExportError, UnsupportedArchitecture
from trt_embed.exporter.source import SentenceTransformerConfig
from trt_embed.zoo import ZooEntry, load_zoo, zoo_entry

CONVERTS = ("embed",)
_CONVERTIBLE = ("ForCausalLM", "Model")


def entry_for(architecture: str, convert: str | None) -> ZooEntry:
    """The zoo entry of `architecture`; with `convert="embed"`, a causal decoder entry (last-token pooling,
    normalized) for any `*ForCausalLM` / `*Model` that the zoo does not list."""
    if convert is not None and convert not in CONVERTS:
        raise ExportError(f"--convert must be one of {', '.join(CONVERTS)}, got {convert!r}")
    if architecture in load_zoo() or convert is None:
        try:
            return zoo_entry(architecture)
        except UnsupportedArchitecture as exc:
            if architecture.endswith(_CONVERTIBLE):
                raise UnsupportedArchitecture(
                    f"{exc} A decoder LLM can be exported as an embedder with `--convert embed` "
                    "(last-token pooling, normalized)."
                ) from None
            raise
    if not architecture.endswith(_CONVERTIBLE):
        raise UnsupportedArchitecture(
            f"--convert embed works for `*ForCausalLM` and `*Model` architectures, not {architecture!r}"
        )
    return ZooEntry(
        architecture=architecture,
        family="decoder",
        loader="AutoModel",  # the base model of the checkpoint's model_type; an LM head is dropped
        default_pooling="last",
        token_type_ids=False,
        ort_fusion=None,
        padding_side="right",
        tiny={},
        recipe={"attention": "causal"},
    )


def apply_recipe(st: SentenceTransformerConfig, entry: ZooEntry) -> SentenceTransformerConfig:
    """Fill in what the checkpoint's sentence-transformers files do not say: prompts, prompt exclusion."""
    recipe = entry.recipe
    return dataclasses.replace(
        st,
        include_prompt=st.include_prompt and bool(recipe.get("include_prompt", True)),
        prompts=st.prompts or {str(k): str(v) for k, v in (recipe.get("prompts") or {}).items()},
        default_prompt_name=st.default_prompt_name or recipe.get("default_prompt_name"),
    )


def recipe_matryoshka(entry: ZooEntry, embedding_dim: int) -> list[int] | None:
    """Matryoshka dimensions from the recipe: `any` -> [] (any size), a list -> those up to the output size."""
    dims = entry.recipe.get("matryoshka")
    if dims is None:
        return None
    if dims == "any":
        return []
    kept = sorted(int(d) for d in dims if int(d) < embedding_dim)
    return [*kept, embedding_dim]


def ensure_eos(tokenizer_dir: Path, model_dir: Path, entry: ZooEntry, model_config: dict[str, Any]) -> None:
    """Make the artifact's tokenizer end every input with EOS when the model needs it: the recipe says
    `append_eos` (GritLM appends `eos_token` to each text) or `tokenizer_config.json` has `add_eos_token`."""
    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config: dict[str, Any] = json.loads(tok_config_path.read_text()) if tok_config_path.is_file() else {}
    if not (entry.recipe.get("append_eos") or tok_config.get("add_eos_token")):
        return
    from tokenizers import Tokenizer, processors

    path = tokenizer_dir / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    eos = tok_config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    eos_id = tokenizer.token_to_id(eos) if isinstance(eos, str) else None
    if eos_id is None and model_config.get("eos_token_id") is not None:
        eos_id = model_config["eos_token_id"]
        eos_id = eos_id[0] if isinstance(eos_id, list) else eos_id
        eos = tokenizer.id_to_token(int(eos_id))
    if eos_id is None or eos is None:
        raise ExportError(
            f"{model_dir}: {entry.architecture} needs an EOS token at the end of each input, but neither "
            "tokenizer_config.json (`eos_token`) nor config.json (`eos_token_id`) names one; add `eos_token`"
        )
    if tokenizer.encode("a", add_special_tokens=True).ids[-1:] == [int(eos_id)]:
        return  # the post-processor already appends it
    append = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A $B:1 {eos}:1", special_tokens=[(eos, eos_id)])
    existing = tokenizer.post_processor
    tokenizer.post_processor = append if existing is None else processors.Sequence([existing, append])
    tokenizer.save(str(path))

"""The zoo is the only registry: every entry has a tiny test model and an example checkpoint in the independent table
below, and every tiny model maps back to its entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from trt_embed.errors import UnsupportedArchitecture
from trt_embed.zoo import architecture_of, load_zoo, zoo_entry

ENTRIES = sorted(load_zoo())

# Written by hand, not read from the zoo (as vLLM's registry test keeps its example models): a zoo entry without
# a row here, or a row whose architecture the zoo lost, fails `test_every_architecture_has_an_example`.
EXAMPLES: dict[str, str] = {
    "BertModel": "sentence-transformers/all-MiniLM-L6-v2",
    "RobertaModel": "sentence-transformers/all-distilroberta-v1",
    "RobertaForMaskedLM": "sentence-transformers/stsb-roberta-base (saved as ForMaskedLM)",
    "XLMRobertaModel": "intfloat/multilingual-e5-base",
    "BgeM3EmbeddingModel": "BAAI/bge-m3 (XLMRobertaModel with colbert_linear.pt beside the weights)",
    "BertForMaskedLM": "naver/splade-v3",
    "DistilBertForMaskedLM": "opensearch-project/opensearch-neural-sparse-encoding-doc-v2-distill",
    "BertSpladeSparseEmbeddingModel": "naver/splade-v3 (exported with --architecture BertSpladeSparseEmbeddingModel)",
    "HF_ColBERT": "colbert-ir/colbertv2.0",
    "ErnieModel": "nghuyong/ernie-3.0-base-zh",
    "ModernBertModel": "nomic-ai/modernbert-embed-base",
    "NomicBertModel": "nomic-ai/nomic-embed-text-v1.5",
    "NomicBertModel:moe": "nomic-ai/nomic-embed-text-v2-moe",
    "NomicBertModel:native": "a NomicBert checkpoint saved by transformers' own class",
    "NewModel": "Alibaba-NLP/gte-multilingual-base",
    "GteModel": "Snowflake/snowflake-arctic-embed-m-v2.0",
    "XLMRobertaLoRA": "jinaai/jina-embeddings-v3",
    "LlamaModel": "a Llama-architecture embedder",
    "LlamaForCausalLM": "a Llama checkpoint converted with --convert embed",
    "MistralModel": "intfloat/e5-mistral-7b-instruct",
    "Qwen2Model": "Alibaba-NLP/gte-Qwen2-1.5B-instruct",
    "Qwen2ForCausalLM": "a Qwen2 checkpoint converted with --convert embed",
    "Qwen3Model": "Qwen/Qwen3-Embedding-0.6B",
    "Qwen3ForCausalLM": "a Qwen3 checkpoint converted with --convert embed",
    "Gemma2Model": "BAAI/bge-multilingual-gemma2",
    "Gemma3TextModel": "google/embeddinggemma-300m",
    "GritLM": "GritLM/GritLM-7B",
    "LlamaBidirectionalModel": "nvidia/llama-nemotron-embed-1b-v2",
    "VoyageQwen3BidirectionalEmbedModel": "voyageai/voyage-4-nano",
    "CLIPModel": "openai/clip-vit-base-patch32",
    "SiglipModel": "google/siglip-base-patch16-224 (and the fixed-resolution google/siglip2-base-patch16-224)",
    "Siglip2Model": "google/siglip2-base-patch16-naflex",
    "Qwen2VLForConditionalGeneration": "MrLight/dse-qwen2-2b-mrl-v1",
    "Qwen3VLForConditionalGeneration": "Qwen/Qwen3-VL-Embedding-2B",
    "LlavaNextForConditionalGeneration": "royokong/e5-v",
    "Phi3VForCausalLM": "TIGER-Lab/VLM2Vec-Full",
    "LlamaNemotronVLModel": "nvidia/llama-nemotron-embed-vl-1b-v2",
}


def test_every_architecture_has_an_example() -> None:
    missing = sorted(set(ENTRIES) - set(EXAMPLES))
    stale = sorted(set(EXAMPLES) - set(ENTRIES))
    assert not missing, f"zoo entries without an example in tests/test_zoo.py: {missing}"
    assert not stale, f"examples for architectures the zoo does not have: {stale}"


@pytest.mark.parametrize("architecture", ENTRIES)
def test_entry_has_tiny_model(architecture: str) -> None:
    entry = zoo_entry(architecture)
    built = {"config_class", "model_class", "config"} <= set(entry.tiny)
    assert built or "golden" in entry.tiny, f"{architecture} lacks a tiny test model"
    assert entry.default_pooling in {"cls", "mean", "max", "last", "mean_sqrt_len", "weightedmean"}


@pytest.mark.parametrize("architecture", ENTRIES)
def test_tiny_model_maps_back_to_its_entry(architecture: str, tiny_model: Callable[[str], Path]) -> None:
    saved = json.loads((tiny_model(architecture) / "config.json").read_text())
    assert architecture_of(saved) == architecture


def test_remote_code_class_and_subtypes_route_configs() -> None:
    """jina-v3 says XLMRobertaModel but its auto_map names XLMRobertaLoRA; MoE NomicBert has its own entry."""
    jina = {
        "architectures": ["XLMRobertaModel"],
        "auto_map": {"AutoModel": "jinaai/impl--modeling_lora.XLMRobertaLoRA"},
    }
    assert architecture_of(jina) == "XLMRobertaLoRA"
    assert architecture_of({"architectures": ["XLMRobertaModel"]}) == "XLMRobertaModel"
    unknown_remote = {"architectures": ["BertModel"], "auto_map": {"AutoModel": "someone/code--modeling.MyBert"}}
    assert architecture_of(unknown_remote) == "BertModel"
    assert architecture_of({"architectures": ["NomicBertModel"], "num_experts": 8}) == "NomicBertModel:moe"
    assert architecture_of({"architectures": ["NomicBertModel"], "num_experts": 0}) == "NomicBertModel"
    native = {"architectures": ["NomicBertModel"], "hidden_size": 768}  # saved by transformers' own class
    assert architecture_of(native) == "NomicBertModel:native"
    gte_multilingual = {
        "architectures": ["NewForTokenClassification"],
        "auto_map": {"AutoModel": "x--modeling.NewModel"},
    }
    assert architecture_of(gte_multilingual) == "NewModel"


def test_files_beside_the_weights_route_bge_m3() -> None:
    """bge-m3's config says XLMRobertaModel; its colbert_linear.pt makes it BgeM3EmbeddingModel."""
    config = {"architectures": ["XLMRobertaModel"]}
    assert (
        architecture_of(config, ["model.safetensors", "colbert_linear.pt", "sparse_linear.pt"]) == "BgeM3EmbeddingModel"
    )
    assert architecture_of(config, ["model.safetensors"]) == "XLMRobertaModel"


def test_unknown_architecture_lists_supported() -> None:
    with pytest.raises(UnsupportedArchitecture, match="BertModel"):
        zoo_entry("NoSuchModelForAnything")

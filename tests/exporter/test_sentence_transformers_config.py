"""sentence-transformers module configs are read as sentence-transformers reads them: checked against it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.exporter import ExportOptions, export_model
from trt_embed.runtime import Runtime

TEXTS = ["hello world", "what is the time in the city", "a small blue cat read a paper"]


def make_st_model(base: Path, out: Path, pooling: str, dense: bool, include_prompt: bool = True) -> Path:
    """Wrap a tiny model into a sentence-transformers folder with Pooling (+ Dense) (+ Normalize) and prompts."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import modules as st_modules

    transformer = st_modules.Transformer(str(base))
    dim = transformer.get_embedding_dimension()
    modules = [transformer, st_modules.Pooling(dim, pooling_mode=pooling, include_prompt=include_prompt)]
    if dense:
        import torch

        torch.manual_seed(1)
        modules.append(st_modules.Dense(dim, 24, activation_function=torch.nn.Tanh()))
    modules.append(st_modules.Normalize())
    model = st.SentenceTransformer(modules=modules, device="cpu")
    model.prompts = {"query": "search query: ", "document": "search document: "}
    model.save(str(out))
    return out


@pytest.mark.parametrize(
    ("pooling", "dense", "include_prompt"),
    [
        ("mean", True, True),
        ("cls", False, True),
        ("max", False, True),
        ("weightedmean", True, True),
        ("lasttoken", False, True),
        ("mean_sqrt_len_tokens", False, True),
        ("mean", False, False),
    ],
)
def test_export_matches_sentence_transformers(
    pooling: str, dense: bool, include_prompt: bool, tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    st = pytest.importorskip("sentence_transformers")
    model_dir = make_st_model(tiny_model("BertModel"), tmp_path / "st", pooling, dense, include_prompt)
    export_model(str(model_dir), tmp_path / "artifact", ExportOptions(precision="fp32"))
    reference = st.SentenceTransformer(str(model_dir), device="cpu")
    with Runtime.load(tmp_path / "artifact") as runtime:
        assert runtime.manifest.pooling.include_prompt is include_prompt
        assert runtime.manifest.prompts == {"query": "search query: ", "document": "search document: "}
        for prompt_name in (None, "query"):
            got = runtime.embed(TEXTS, prompt_name=prompt_name)
            expected = reference.encode(TEXTS, prompt_name=prompt_name, normalize_embeddings=False)
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=2e-5)


def test_sentence_bert_config_and_matryoshka(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model("BertModel"), model_dir)
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": True}))
    config = json.loads((model_dir / "config.json").read_text())
    config["matryoshka_dimensions"] = [64, 32, 16]
    (model_dir / "config.json").write_text(json.dumps(config))
    manifest = export_model(str(model_dir), tmp_path / "artifact", ExportOptions(precision="fp32", pooling="cls"))
    assert manifest.max_seq_length == 32
    assert manifest.tokenizer.do_lower_case
    assert manifest.matryoshka_dimensions == [16, 32, 64]
    assert manifest.pooling.mode == "cls"
    with Runtime.load(tmp_path / "artifact") as runtime:
        long_text = " ".join(["hello world"] * 40)
        assert runtime.tokenize([long_text]).lengths == [32]
        np.testing.assert_allclose(runtime.embed(["HELLO World"]), runtime.embed(["hello world"]), atol=1e-6)

"""Decoder LLM embedders: every `decoder` zoo entry exported and embedded matches its PyTorch reference with
left and right padding; batched equals single; prompts, EOS, Dense layers, Matryoshka, `--convert embed`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.engines.base import Batch
from trt_embed.poolers import pool
from trt_embed.runtime import Runtime
from trt_embed.zoo import ZooEntry, load_zoo, zoo_entry

DECODERS = sorted(name for name, entry in load_zoo().items() if entry.family == "decoder")
TEXTS = [
    "hello",
    "the cat read a paper in the city at night",
    " ".join(["what time is it in the world of music and light"] * 8),  # longer than the tiny sliding windows
    "blue water",
    "how fast is a large dog",
]
MIN_COSINE = 0.99999


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def source_ids(model_dir: Path, entry: ZooEntry, text: str) -> list[int]:
    """Token ids as the original model code makes them: the checkpoint's own tokenizer, plus EOS where the
    model's code appends it (GritLM: `text + eos_token`)."""
    from tokenizers import Tokenizer

    ids: list[int] = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(text).ids
    if entry.recipe.get("append_eos"):
        ids.append(int(json.loads((model_dir / "config.json").read_text())["eos_token_id"]))
    return ids


def hf_hidden(model: Any, ids: list[int], bidirectional: bool) -> np.ndarray:
    """Token states of one unpadded input from the transformers model itself. Causal models (and Gemma 3,
    whose config turns on its own bidirectional masks) get the plain 2D mask; bidirectional variants that
    transformers has no class for get an explicit all-visible 4D mask, independent of the exporter's masks."""
    import torch

    input_ids = torch.tensor([ids])
    if bidirectional and not getattr(model.config, "use_bidirectional_attention", False):
        mask = torch.zeros((1, 1, len(ids), len(ids)), dtype=torch.float32)
    else:
        mask = torch.ones_like(input_ids)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).last_hidden_state.numpy()


def torch_reference(model_dir: Path, entry: ZooEntry, texts: list[str], prompt: str | None) -> np.ndarray:
    from trt_embed.exporter.models.decoder import resolve_class

    model = resolve_class(entry.tiny["model_class"]).from_pretrained(str(model_dir), attn_implementation="eager")
    # the transformers base model (drops an LM head); our own classes (Voyage) include their projection
    model = model.base_model if type(model).__module__.startswith("transformers.") else model
    bidirectional = entry.recipe.get("attention") == "bidirectional"
    skip = 0
    if prompt and entry.recipe.get("include_prompt", True) is False:
        from tokenizers import Tokenizer

        skip = len(Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(prompt).ids)  # GritLM
    rows = []
    for text in texts:
        ids = source_ids(model_dir, entry, (prompt or "") + text)
        hidden = hf_hidden(model.eval(), ids, bidirectional)
        mask = np.ones((1, len(ids)), dtype=np.int64)
        mask[:, :skip] = 0
        rows.append(pool(entry.default_pooling, hidden, mask)[0])
    return np.stack(rows)


@pytest.mark.parametrize("architecture", DECODERS)
def test_matches_pytorch_left_and_right_padding(
    architecture: str, tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]
) -> None:
    entry = zoo_entry(architecture)
    with Runtime.load(tiny_artifact(architecture), backend="onnxruntime-cpu") as runtime:
        prompt = runtime.resolve_prompt(None, None)
        assert runtime.tokenize(TEXTS, prompt=prompt).ids == [
            source_ids(tiny_model(architecture), entry, (prompt or "") + t) for t in TEXTS
        ]
        lengths = runtime.tokenize(TEXTS).lengths
        assert max(lengths) > 3 * min(lengths) and max(lengths) > 20, "mixed lengths, past the sliding windows"
        reference = torch_reference(tiny_model(architecture), entry, TEXTS, prompt)
        assert runtime.manifest.tokenizer.padding_side == entry.padding_side
        for side in ("left", "right"):
            runtime.manifest.tokenizer.padding_side = side
            got = runtime.embed(TEXTS, normalize=False)
            assert got.shape == reference.shape
            cos = cosine(got, reference)
            assert cos.min() >= MIN_COSINE, f"{side} padding: cosine {cos.min():.7f}"
            np.testing.assert_allclose(got, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("architecture", DECODERS)
def test_batched_equals_single(architecture: str, tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact(architecture), backend="onnxruntime-cpu") as runtime:
        batched = runtime.embed(TEXTS)
        single = np.concatenate([runtime.embed([t]) for t in TEXTS])
        np.testing.assert_allclose(batched, single, atol=2e-5)


def test_recipes_reach_the_manifest(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("GritLM")) as runtime:
        manifest = runtime.manifest
        assert manifest.pooling.include_prompt is False and manifest.default_prompt_name == "document"
        assert "pooling_mask" in runtime.engine.input_names
        eos = 2
        assert all(ids[-1] == eos for ids in runtime.tokenize(TEXTS).ids), "GritLM inputs end with EOS"
        with_instruction = runtime.embed(["blue water"], prompt_name="query")
        assert cosine(with_instruction, runtime.embed(["blue water"]))[0] < 0.9999
    with Runtime.load(tiny_artifact("Qwen3ForCausalLM")) as runtime:
        assert runtime.manifest.matryoshka_dimensions == [] and runtime.manifest.tokenizer.padding_side == "left"
        full = runtime.embed(TEXTS, normalize=False)
        cut = runtime.embed(TEXTS, dimensions=16)
        expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=-1, keepdims=True)
        np.testing.assert_allclose(cut, expected, atol=1e-5)
    with Runtime.load(tiny_artifact("VoyageQwen3BidirectionalEmbedModel")) as runtime:
        assert runtime.embedding_dim == 48 and runtime.manifest.matryoshka_dimensions == [48]


def test_positions_follow_the_mask() -> None:
    import torch

    from trt_embed.exporter.models.decoder import positions_from_mask

    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


def test_embeddinggemma_pipeline_matches_sentence_transformers(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    """Gemma 3 as embeddinggemma: bidirectional, mean pooling, two Dense layers, prompts, Matryoshka."""
    st = pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers.sentence_transformer import modules as st_modules

    from trt_embed.exporter import ExportOptions, export_model

    transformer = st_modules.Transformer(str(tiny_model("Gemma3TextModel")))
    torch.manual_seed(3)
    modules = [
        transformer,
        st_modules.Pooling(64, pooling_mode="mean"),
        st_modules.Dense(64, 256, bias=False, activation_function=torch.nn.Identity()),
        st_modules.Dense(256, 768, bias=False, activation_function=torch.nn.Identity()),
        st_modules.Normalize(),
    ]
    model = st.SentenceTransformer(modules=modules, device="cpu")
    model.prompts = {"query": "task: search result | query: ", "document": "title: none | text: "}
    model.save(str(tmp_path / "st"))
    export_model(str(tmp_path / "st"), tmp_path / "artifact", ExportOptions(precision="fp32"))
    reference = st.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    with Runtime.load(tmp_path / "artifact") as runtime:
        assert runtime.manifest.matryoshka_dimensions == [128, 256, 512, 768]
        assert runtime.manifest.dense_layers == 2
        for prompt_name in (None, "query", "document"):
            got = runtime.embed(TEXTS, prompt_name=prompt_name)
            expected = reference.encode(TEXTS, prompt_name=prompt_name, normalize_embeddings=True)
            assert cosine(got, expected).min() >= MIN_COSINE
        cut = runtime.embed(TEXTS, prompt_name="query", dimensions=256)
        expected = reference.encode(TEXTS, prompt_name="query", normalize_embeddings=False)[:, :256]
        assert cosine(cut, expected).min() >= MIN_COSINE


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "llama_bidirectional"


@pytest.fixture(scope="module")
def golden_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden checkpoint (original NVIDIA code's weights), given a tiny tokenizer, exported."""
    import shutil

    from tiny_models import tiny_tokenizer

    from trt_embed.exporter import ExportOptions, export_model

    model_dir = tmp_path_factory.mktemp("golden") / "model"
    shutil.copytree(GOLDEN / "model", model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    tiny_tokenizer(config, config["vocab_size"], "[CLS] $A").save(str(model_dir / "tokenizer.json"))
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]", "model_max_length": 512}))
    out = model_dir.parent / "artifact"
    export_model(str(model_dir), out, ExportOptions(precision="fp32"))
    return out


def test_llama_bidirectional_matches_golden(golden_artifact: Path) -> None:
    golden = np.load(GOLDEN / "golden.npz")
    with Runtime.load(golden_artifact, backend="onnxruntime-cpu") as runtime:
        assert runtime.manifest.architecture == "LlamaBidirectionalModel"
        assert runtime.manifest.pooling.mode == "mean"
        for i in range(6):
            ids, mask = golden[f"b{i}_input_ids"], golden[f"b{i}_attention_mask"]
            batch = Batch.padded({"input_ids": ids, "attention_mask": mask})
            out = runtime.engine.infer(batch, ["sentence_embedding", "token_embeddings"])
            real = mask.astype(bool)
            np.testing.assert_allclose(
                out["token_embeddings"][real], golden[f"b{i}_last_hidden_state"][real], atol=1e-4, rtol=1e-4
            )
            np.testing.assert_allclose(out["sentence_embedding"], golden[f"b{i}_pooled_mean"], atol=1e-4, rtol=1e-4)
            assert cosine(out["sentence_embedding"], golden[f"b{i}_embedding"]).min() >= MIN_COSINE
            # the same rows through the runtime (its own padding and batching), left padding included
            rows = [row[m].tolist() for row, m in zip(ids, real, strict=True)]
            for side in ("right", "left"):
                runtime.manifest.tokenizer.padding_side = side
                got = runtime.embed(rows, normalize=False)  # token-id inputs, padded by the runtime
                assert cosine(got, golden[f"b{i}_embedding"]).min() >= MIN_COSINE


def test_llama3_rope_matches_golden(tmp_path: Path) -> None:
    from trt_embed.exporter.models.decoder import decoder_encoder

    encoder = decoder_encoder(GOLDEN / "model", zoo_entry("LlamaBidirectionalModel"), False)
    inv_freq = encoder.model.rotary_emb.inv_freq.numpy()
    np.testing.assert_allclose(inv_freq, np.load(GOLDEN / "golden.npz")["rope_inv_freq"], rtol=1e-6)


@pytest.fixture(scope="module")
def phi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `PhiForCausalLM`: an architecture that is not in the zoo."""
    import torch
    import transformers
    from tiny_models import tiny_tokenizer

    config: dict[str, Any] = {
        "vocab_size": 1024,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "partial_rotary_factor": 0.5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    torch.manual_seed(7)
    model = transformers.PhiForCausalLM(transformers.PhiConfig(**config)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1)
    directory = tmp_path_factory.mktemp("phi") / "model"
    model.save_pretrained(directory)
    tiny_tokenizer(config, 1024, "[CLS] $A [SEP]").save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]", "padding_side": "left"}))
    return directory


def test_convert_embed_any_causal_lm(phi_dir: Path, tmp_path: Path) -> None:
    import transformers

    from trt_embed.cli import main
    from trt_embed.errors import UnsupportedArchitecture
    from trt_embed.exporter import export_model

    assert "PhiForCausalLM" not in load_zoo()
    with pytest.raises(UnsupportedArchitecture, match=r"--convert embed"):
        export_model(str(phi_dir), tmp_path / "refused")
    out = tmp_path / "artifact"
    assert main(["export", str(phi_dir), "-o", str(out), "--convert", "embed", "--precision", "fp32"]) == 0
    hf = transformers.AutoModel.from_pretrained(str(phi_dir), attn_implementation="eager").eval()
    entry = ZooEntry("PhiForCausalLM", "decoder", "AutoModel", "last", False, None, "right", {})
    with Runtime.load(out) as runtime:
        manifest = runtime.manifest
        assert (manifest.architecture, manifest.pooling.mode, manifest.normalize) == ("PhiForCausalLM", "last", True)
        rows = [hf_hidden(hf, source_ids(phi_dir, entry, t), False)[0, -1] for t in TEXTS]  # the last token
        for side in ("left", "right"):
            runtime.manifest.tokenizer.padding_side = side
            assert cosine(runtime.embed(TEXTS, normalize=False), np.stack(rows)).min() >= MIN_COSINE


def test_qwen3_embedding_pipeline_matches_sentence_transformers(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    """Qwen3-Embedding layout: left padding, EOS from the tokenizer, last-token pooling, instruction prompts."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import modules as st_modules

    from trt_embed.exporter import ExportOptions, export_model

    transformer = st_modules.Transformer(str(tiny_model("Qwen3ForCausalLM")))
    modules = [transformer, st_modules.Pooling(64, pooling_mode="lasttoken"), st_modules.Normalize()]
    model = st.SentenceTransformer(modules=modules, device="cpu")
    model.prompts = {"query": "Instruct: Given a web search query, retrieve relevant passages\nQuery:", "document": ""}
    model.save(str(tmp_path / "st"))
    export_model(str(tmp_path / "st"), tmp_path / "artifact", ExportOptions(precision="fp32"))
    reference = st.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert reference.tokenizer.padding_side == "left"
    with Runtime.load(tmp_path / "artifact") as runtime:
        assert runtime.manifest.tokenizer.padding_side == "left" and runtime.manifest.pooling.mode == "last"
        for prompt_name in (None, "query", "document"):
            got = runtime.embed(TEXTS, prompt_name=prompt_name)
            expected = reference.encode(TEXTS, prompt_name=prompt_name, normalize_embeddings=True)
            assert cosine(got, expected).min() >= MIN_COSINE


def test_pooling_override(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """`--pooling mean` on a last-token model (some gte-Qwen2 variants are used that way)."""
    from trt_embed.exporter import ExportOptions, export_model

    model_dir = tiny_model("Qwen2Model")
    export_model(str(model_dir), tmp_path / "artifact", ExportOptions(precision="fp32", pooling="mean"))
    entry = zoo_entry("Qwen2Model")
    mean_entry = ZooEntry(**{**entry.__dict__, "default_pooling": "mean"})
    with Runtime.load(tmp_path / "artifact") as runtime:
        assert runtime.manifest.pooling.mode == "mean"
        reference = torch_reference(model_dir, mean_entry, TEXTS, None)
        for side in ("left", "right"):
            runtime.manifest.tokenizer.padding_side = side
            assert cosine(runtime.embed(TEXTS, normalize=False), reference).min() >= MIN_COSINE


def test_add_eos_token_is_honoured(tmp_path: Path) -> None:
    """A tokenizer_config with `add_eos_token` (e5-mistral style) gets EOS appended by the artifact tokenizer."""
    from tiny_models import tiny_tokenizer

    from trt_embed.exporter.models.recipe import ensure_eos

    config = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    tiny_tokenizer(config, 1024, "[CLS] $A").save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "[SEP]", "add_eos_token": True}))
    ensure_eos(tmp_path, tmp_path, zoo_entry("LlamaModel"), config)
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("hello world").ids
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 4
    ensure_eos(tmp_path, tmp_path, zoo_entry("LlamaModel"), config)  # idempotent
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("hello world").ids == ids


def test_mask_has_no_fully_blocked_rows() -> None:
    import torch

    from trt_embed.exporter.models.decoder import additive_mask

    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    for bidirectional in (False, True):
        blocked = additive_mask(mask, bidirectional=bidirectional, window=None, dtype=torch.float32) < 0
        assert not blocked.all(dim=-1).any(), "a fully blocked row becomes NaN once `min` turns into -inf"
        assert blocked[0, 0, 2:, :2].all() and blocked[1, 0, :3, 3].all(), "real tokens never see padding"
    causal = additive_mask(mask, bidirectional=False, window=2, dtype=torch.float32) < 0
    assert causal[1, 0, :3].tolist() == [
        [False, True, True, True],
        [False, False, True, True],
        [True, False, False, True],
    ]


def test_convert_refuses_what_it_cannot_export(tmp_path: Path) -> None:
    """Bloom (ALiBi from a 2D mask) does not take prepared masks: a clear refusal, not a wrong graph."""
    import transformers

    from trt_embed.errors import ExportError
    from trt_embed.exporter.models.decoder import decoder_encoder
    from trt_embed.exporter.models.recipe import entry_for

    config = transformers.BloomConfig(vocab_size=1024, hidden_size=64, n_layer=2, n_head=4)
    transformers.BloomForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(ExportError, match=r"BloomForCausalLM cannot be exported as a decoder embedder"):
        decoder_encoder(tmp_path, entry_for("BloomForCausalLM", "embed"), False)


def test_architecture_override(
    tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path], tmp_path: Path
) -> None:
    """GritLM-7B's config.json says MistralForCausalLM: `--architecture GritLM` picks the GritLM recipe."""
    import shutil

    from trt_embed.cli import main

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model("GritLM"), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["MistralForCausalLM"]}))
    out = tmp_path / "artifact"
    assert main(["export", str(model_dir), "-o", str(out), "--architecture", "GritLM", "--precision", "fp32"]) == 0
    with Runtime.load(out) as runtime, Runtime.load(tiny_artifact("GritLM")) as expected:
        assert runtime.manifest.architecture == "GritLM" and not runtime.manifest.pooling.include_prompt
        np.testing.assert_allclose(runtime.embed(TEXTS), expected.embed(TEXTS), atol=1e-6)

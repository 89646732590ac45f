"""Our remote-code implementations beyond the golden batches: RoPE tables, dynamic NTK, strict weight loading,
checkpoint prefixes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import GOLDEN

from trt_embed.engines.base import Batch
from trt_embed.errors import ExportError
from trt_embed.exporter.models.gte import gte_encoder
from trt_embed.exporter.models.nomic_bert import nomic_bert_encoder
from trt_embed.zoo import zoo_entry


def golden_copy(folder: str, tmp_path: Path, **config_changes: object) -> Path:
    source = GOLDEN / folder / "model"
    if not source.is_dir():
        pytest.skip(f"golden checkpoint {source} not present")
    target = tmp_path / folder
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    for key in [k for k, v in config_changes.items() if v is None]:
        del config[key]
    (target / "config.json").write_text(json.dumps(config))
    return target


def hidden(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(ids), torch.from_numpy(mask)).last_hidden_state.numpy()
    return out


@pytest.mark.parametrize("folder", ["gte_new", "gte_snowflake"])
def test_gte_rope_tables_match_the_original(folder: str, tmp_path: Path) -> None:
    """new-impl's NTK frequencies `(theta f)^(-2i/d) f^(-2/d)` (gte_new) and plain RoPE (gte_snowflake)."""
    data = np.load(GOLDEN / folder / "golden.npz")
    entry = zoo_entry({"gte_new": "NewModel", "gte_snowflake": "GteModel"}[folder])
    model = gte_encoder(golden_copy(folder, tmp_path), entry, False)
    cos, sin = model.rotary.tables(40)
    np.testing.assert_allclose(model.rotary.inv_freq.numpy(), data["rope_inv_freq"], rtol=1e-6)
    np.testing.assert_allclose(cos.numpy(), data["rope_cos_first40"], atol=1e-6)
    np.testing.assert_allclose(sin.numpy(), data["rope_sin_first40"], atol=1e-6)


def test_nomic_dynamic_ntk_scales_only_batches_longer_than_trained(tmp_path: Path) -> None:
    data = np.load(GOLDEN / "nomic_bert" / "golden.npz")
    trained = 16
    model_dir = golden_copy("nomic_bert", tmp_path, rotary_scaling_factor=2, max_trained_positions=trained)
    model = nomic_bert_encoder(model_dir, zoo_entry("NomicBertModel"), False)
    short = hidden(model, data["b1_input_ids"], data["b1_attention_mask"])  # 7 <= 16 tokens: plain RoPE
    np.testing.assert_allclose(short, data["b1_last_hidden_state"], atol=1e-5)
    length, dim = 40, 16  # the original's formula, in float64
    base = 1000.0 * (2 * length / trained - 1) ** (dim / (dim - 2))
    angles = np.arange(length)[:, None] * base ** (-np.arange(0, dim, 2) / dim)[None, :]
    cos, _ = model.rotary.tables(length)
    np.testing.assert_allclose(cos.numpy(), np.cos(np.concatenate([angles, angles], axis=1)), atol=1e-5)
    scaled = hidden(model, data["b2_input_ids"], data["b2_attention_mask"])  # 40 > 16 tokens
    assert np.abs(scaled - data["b2_last_hidden_state"]).max() > 1e-3


def test_nomic_dynamic_ntk_exports(tmp_path: Path) -> None:
    """The batch length reaches the RoPE base inside the graph: ONNX equals PyTorch on both sides of M."""
    from tiny_models import save_tiny_tokenizer

    from trt_embed.exporter import ExportOptions, export_model
    from trt_embed.runtime import Runtime

    model_dir = golden_copy("nomic_bert", tmp_path, rotary_scaling_factor=2, max_trained_positions=6)
    tok = zoo_entry("NomicBertModel").tiny["tokenizer"]
    save_tiny_tokenizer({**json.loads((model_dir / "config.json").read_text()), **tok}, model_dir, tok)
    export_model(str(model_dir), tmp_path / "artifact", ExportOptions(precision="fp32"))
    data = np.load(GOLDEN / "nomic_bert" / "golden.npz")
    model = nomic_bert_encoder(model_dir, zoo_entry("NomicBertModel"), False)
    with Runtime.load(tmp_path / "artifact", backend="onnxruntime-cpu") as runtime:
        for i in (0, 1, 4):  # 1 and 7 tokens: around M = 6; 40 tokens: well past it
            feeds = {"input_ids": data[f"b{i}_input_ids"], "attention_mask": data[f"b{i}_attention_mask"]}
            got = runtime.engine.infer(Batch.padded(feeds), ["token_embeddings"])["token_embeddings"]
            np.testing.assert_allclose(got, hidden(model, *feeds.values()), atol=1e-4)


def test_unused_checkpoint_tensors_are_an_error(tmp_path: Path) -> None:
    """A MoE checkpoint whose config lost its MoE keys must not export as a dense model minus its experts."""
    model_dir = golden_copy("nomic_bert_moe", tmp_path, num_experts=None)
    with pytest.raises(ExportError, match=r"missing .*mlp\.fc1.* unused .*experts"):
        nomic_bert_encoder(model_dir, zoo_entry("NomicBertModel"), False)


def test_prefixed_task_head_checkpoints_load(tmp_path: Path) -> None:
    """gte-multilingual-base is saved as NewForTokenClassification: `new.` prefix plus a classifier."""
    model_dir = golden_copy("gte_new", tmp_path)
    state = load_file(str(model_dir / "model.safetensors"))
    state = {f"new.{k}": v for k, v in state.items()}
    state |= {"classifier.weight": torch.zeros(2, 64), "classifier.bias": torch.zeros(2)}
    save_file(state, str(model_dir / "model.safetensors"))
    data = np.load(GOLDEN / "gte_new" / "golden.npz")
    model = gte_encoder(model_dir, zoo_entry("NewModel"), False)
    mask = data["b3_attention_mask"].astype(bool)
    got = hidden(model, data["b3_input_ids"], data["b3_attention_mask"])
    np.testing.assert_allclose(got[mask], data["b3_last_hidden_state"][mask], atol=1e-4)

"""A PEFT LoRA adapter merged at export matches PyTorch with the adapter applied, as a named variant."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.errors import ExportError
from trt_embed.exporter import ExportOptions, export_model
from trt_embed.poolers import pool
from trt_embed.runtime import Runtime

TEXTS = ["hello world", "the cat read a paper in the city at night", "blue water " * 9]


@pytest.fixture(scope="module")
def adapter(lora_adapter: Path) -> Path:
    return lora_adapter


def reference(model_dir: Path, adapter_dir: Path | None, runtime: Runtime) -> np.ndarray:
    import torch
    import transformers
    from peft import PeftModel

    model = transformers.BertModel.from_pretrained(str(model_dir)).eval()
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()  # adapter applied, not merged
    rows = []
    for text in TEXTS:
        ids = torch.tensor(runtime.tokenize([text]).ids)
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.numpy()
        rows.append(pool("mean", hidden, np.ones(ids.shape, dtype=np.int64))[0])
    vectors = np.stack(rows)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_lora_variant_matches_peft(adapter: Path, tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    model_dir = tiny_model("BertModel")
    manifest = export_model(
        str(model_dir), tmp_path / "artifact", ExportOptions(precision="fp32", lora={"legal": str(adapter)})
    )
    assert manifest.lora_adapters["legal"]["r"] == 4
    assert len(manifest.lora_adapters["legal"]["sha256"]) == 64
    assert (tmp_path / "artifact" / "variants" / "legal" / "model.onnx").is_file()
    with Runtime.load(tmp_path / "artifact") as runtime:
        assert runtime.variants == ["base", "legal"]
        assert "legal" not in runtime.pool._engines, "variants load lazily"
        tuned = runtime.embed(TEXTS, model="legal")
        base = runtime.embed(TEXTS)
        expected_tuned = reference(model_dir, adapter, runtime)
        expected_base = reference(model_dir, None, runtime)
    assert ((tuned * expected_tuned).sum(1) >= 0.99999).all()
    assert ((base * expected_base).sum(1) >= 0.99999).all()
    assert ((tuned * base).sum(1) < 0.999).all(), "the adapter changes the embeddings"


def test_bad_adapter(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a PEFT adapter directory"):
        export_model(str(tiny_model("BertModel")), tmp_path / "a", ExportOptions(lora={"x": str(tmp_path)}))
    with pytest.raises(ExportError, match="must be non-empty, not 'base'"):
        export_model(str(tiny_model("BertModel")), tmp_path / "b", ExportOptions(lora={"base": str(tmp_path)}))

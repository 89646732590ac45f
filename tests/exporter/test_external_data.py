"""Graphs over 2 GB keep their weights in `<graph>.data`: gathered, hashed in the manifest, relocatable."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from trt_embed.errors import ArtifactError
from trt_embed.exporter import ExportOptions, export_model, external_data
from trt_embed.runtime import Runtime

TEXTS = ["hello", "the cat read a paper in the city at night"]


def test_large_graph_artifact(
    tiny_model: Callable[[str], Path],
    tiny_artifact: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(external_data, "INLINE_LIMIT", 0)  # treat the tiny graph as if it were over 2 GB
    export_model(str(tiny_model("Qwen3Model")), tmp_path / "artifact", ExportOptions(precision="auto"))
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "artifact", moved)  # relocatable: locations are relative
    with Runtime.load(moved) as runtime:
        engines = {e.file: e for e in runtime.manifest.engines}
        assert set(engines["model.onnx"].extra["external_data"]) == {"model.onnx.data"}
        assert (moved / "model.onnx").stat().st_size < (moved / "model.onnx.data").stat().st_size
        got = runtime.embed(TEXTS)
    with Runtime.load(tiny_artifact("Qwen3Model")) as runtime:
        np.testing.assert_allclose(got, runtime.embed(TEXTS), atol=1e-5)
    if "model.int8.onnx" in engines:
        assert external_data.data_files(moved / "model.int8.onnx") == ["model.int8.onnx.data"]
        with Runtime.load(moved, precision="int8") as runtime:
            assert runtime.embed(TEXTS).shape == got.shape

    with (moved / "model.onnx.data").open("r+b") as fh:
        fh.seek(64)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError, match=r"model.onnx.data is corrupt"):
        Runtime.load(moved)
    (moved / "model.onnx.data").unlink()
    with pytest.raises(ArtifactError, match=r"model.onnx.data is listed in the manifest but missing"):
        Runtime.load(moved)


def test_per_tensor_files_are_gathered(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    """What the TorchScript exporter writes for a graph over 2 GB: one file per weight."""
    exported = tmp_path / "export" / "model.onnx"
    exported.parent.mkdir()
    model = onnx.load(str(tiny_artifact("LlamaModel") / "model.onnx"))
    onnx.save_model(model, str(exported), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
    assert len(external_data.data_files(exported)) > 5
    (tmp_path / "out").mkdir()
    external_data.place_onnx(exported, tmp_path / "out" / "model.onnx")
    assert external_data.data_files(tmp_path / "out" / "model.onnx") == ["model.onnx.data"]
    gathered = onnx.load(str(tmp_path / "out" / "model.onnx"))
    original = onnx.load(str(tiny_artifact("LlamaModel") / "model.onnx"))  # (saving made `model` external)
    for a, b in zip(original.graph.initializer, gathered.graph.initializer, strict=True):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))

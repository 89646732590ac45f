"""Static int8: calibration passages, the shipped entry, and skipping without nncf."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from trt_embed.exporter.int8 import SMOOTH_QUANT_ALPHAS, calibration_passages, static_int8_entry
from trt_embed.manifest import Manifest


def test_calibration_passages_cover_long_inputs() -> None:
    texts = [f"sentence number {i} about a topic." for i in range(48)]
    passages = calibration_passages(texts)
    assert passages[:48] == texts
    longest = max(passages, key=len)
    assert longest.count("sentence number") == 16
    assert len(passages) > len(texts) + 30


def test_minilm_ships_a_checked_static_graph(minilm_artifact: Path) -> None:
    entries = {e.file: e for e in Manifest.read(minilm_artifact).engines}
    static = entries["model.int8-static.onnx"]
    assert static.precision == "int8" and static.extra["int8_scheme"] == "static"
    assert static.quality["cosine_mean"] >= 0.99 and static.quality["cosine_min"] >= 0.97
    assert static.extra["smooth_quant_alpha"] in SMOOTH_QUANT_ALPHAS
    assert "int8_scheme" not in entries["model.int8.onnx"].extra
    assert not list(minilm_artifact.glob("*alpha*")), "the SmoothQuant trials are cleaned up"
    assert (minilm_artifact / "model.int8-static.onnx").stat().st_size < 0.5 * (
        minilm_artifact / "model.onnx"
    ).stat().st_size


def test_without_nncf_export_skips_the_static_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    onnx = pytest.importorskip("onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "model.onnx"))
    monkeypatch.setitem(sys.modules, "nncf", None)

    def measure(file: str, precision: str, optimized: bool) -> tuple[object, np.ndarray]:
        raise AssertionError("nothing to measure")

    assert static_int8_entry(tmp_path, "", [], measure) is None  # type: ignore[arg-type]
    assert "nncf is not installed" in caplog.text
    assert not (tmp_path / "model.int8-static.onnx").exists()

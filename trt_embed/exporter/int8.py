"""Static int8: `static_int8_from_onnx` (calibrated activation scales, QDQ) and the checked manifest entry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.errors import ExportError
from trt_embed.exporter.external_data import data_files
from trt_embed.manifest import EngineEntry

log = logging.getLogger("trt_embed.export")
INT8_MIN_MEAN_COSINE = 0.99  # an int8 graph is shipped only this close to fp32 (on the calibration texts)
INT8_MIN_COSINE = 0.97

Measure = Callable[[str, str, bool], tuple[EngineEntry, np.ndarray]]


def calibration_passages(texts: list[str]) -> list[str]:
    """The texts, plus passages made by joining runs of 4, 8 and 16 of them: activation ranges grow with
    sequence length, so static scales calibrated on short sentences alone clip long inputs."""
    passages = list(texts)
    for size in (4, 8, 16):
        passages += [" ".join(texts[i : i + size]) for i in range(0, max(1, len(texts) - size + 1), size // 2)]
    return passages


def static_int8_from_onnx(src: Path, dst: Path, feeds: list[dict[str, Any]]) -> None:
    """int8 with calibrated (static) activation scales, as QuantizeLinear/DequantizeLinear pairs, from nncf's
    transformer preset: it keeps precision-sensitive ops (softmax inputs, norms, the residual stream) in float
    and folds SmoothQuant scales into the weights. OpenVINO runs such graphs on VNNI/AMX int8 kernels;
    onnxruntime runs them too, more slowly than the dynamic graph. `feeds` are the calibration inputs."""
    try:
        import nncf
        import onnx
    except ImportError as exc:
        raise ExportError(f"static int8 needs nncf: pip install 'trt-embed[export]' ({exc})") from exc
    logging.getLogger("nncf").setLevel(logging.ERROR)
    try:
        quantized = nncf.quantize(
            onnx.load(str(src)), nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds)
        )
        onnx.save(quantized, str(dst))
    except Exception as exc:
        raise ExportError(f"static int8 quantization failed: {exc}") from exc


def static_int8_entry(out: Path, prefix: str, feeds: list[dict[str, Any]], measure: Measure) -> EngineEntry | None:
    """Quantize `out/{prefix}model.onnx` into `model.int8-static.onnx` and return its entry, kept only if as
    accurate as an int8 graph must be. Optional: without nncf, or for graphs over 2 GB, export skips it and
    says so."""
    source = out / f"{prefix}model.onnx"
    file = f"{prefix}model.int8-static.onnx"
    if data_files(source):
        log.info("no static int8 graph: the fp32 graph is over 2 GB")
        return None
    try:
        import nncf  # noqa: F401
    except ImportError:
        log.warning("no static int8 graph (openvino-cpu's fastest int8): nncf is not installed; pip install nncf")
        return None
    try:
        static_int8_from_onnx(source, out / file, feeds)
    except ExportError as exc:
        log.warning("no static int8 graph: %s", exc)
        return None
    entry, cos = measure(file, "int8", False)
    if cos.mean() >= INT8_MIN_MEAN_COSINE and cos.min() >= INT8_MIN_COSINE:
        entry.extra["int8_scheme"] = "static"
        return entry
    (out / file).unlink()
    log.warning("static int8 is not accurate enough (cosine vs fp32: mean %.4f, min %.4f)", cos.mean(), cos.min())
    return None

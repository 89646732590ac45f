"""Static int8: `static_int8_from_onnx` (calibrated activation scales, QDQ) and the checked manifest entry."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trt_embed.errors import ExportError
from trt_embed.exporter.calibration import short_queries
from trt_embed.exporter.external_data import data_files
from trt_embed.manifest import EngineEntry

log = logging.getLogger("trt_embed.export")
INT8_MIN_MEAN_COSINE = 0.99  # an int8 graph is shipped only this close to fp32 (on `check_texts`)
INT8_MIN_COSINE = 0.97

# SmoothQuant migration strengths tried at export; the one most accurate on the calibration texts is kept.
# nncf's transformer default is 0.95; on all-MiniLM-L6-v2, 0.7-0.8 halved the worst-case error (BENCHMARKS.md).
SMOOTH_QUANT_ALPHAS = (0.95, 0.75, 0.5)

Measure = Callable[[str, str, bool], tuple[EngineEntry, np.ndarray]]


def calibration_passages(texts: list[str]) -> list[str]:
    """The texts, short queries cut from them, and passages made by joining runs of 4, 8 and 16 of them:
    activation ranges grow with sequence length, so static scales calibrated on short sentences alone clip long
    inputs, and scales calibrated without short queries misplace theirs."""
    passages = [*texts, *short_queries(texts)]
    for size in (4, 8, 16):
        passages += [" ".join(texts[i : i + size]) for i in range(0, max(1, len(texts) - size + 1), size // 2)]
    return passages


def static_int8_from_onnx(src: Path, dst: Path, feeds: list[dict[str, Any]], smooth_quant_alpha: float) -> None:
    """int8 with calibrated (static) activation scales, as QuantizeLinear/DequantizeLinear pairs, from nncf's
    transformer preset: it keeps precision-sensitive ops (softmax inputs, norms, the residual stream) in float
    and folds SmoothQuant scales (migration strength `smooth_quant_alpha`) into the weights. OpenVINO runs such
    graphs on VNNI/AMX int8 kernels; onnxruntime runs them too, more slowly than the dynamic graph. `feeds` are
    the calibration inputs."""
    try:
        import nncf
        import onnx
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )
    except ImportError as exc:
        raise ExportError(f"static int8 needs nncf: pip install 'trt-embed[export]' ({exc})") from exc
    logging.getLogger("nncf").setLevel(logging.ERROR)
    try:
        smoothing = AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha)
        with contextlib.redirect_stdout(io.StringIO()):  # nncf draws progress bars on stdout
            quantized = nncf.quantize(
                onnx.load(str(src)),
                nncf.Dataset(feeds),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds),
                advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=smoothing),
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
    best: tuple[float, float, float, EngineEntry] | None = None  # (mean, min, alpha, entry)
    for step, alpha in enumerate(SMOOTH_QUANT_ALPHAS, 1):
        log.info(
            "calibrating static int8 on %d passages, SmoothQuant alpha %s (%d/%d)",
            len(feeds),
            alpha,
            step,
            len(SMOOTH_QUANT_ALPHAS),
        )
        trial = f"{prefix}model.int8-static.alpha{alpha}.onnx"
        try:
            static_int8_from_onnx(source, out / trial, feeds, alpha)
        except ExportError as exc:
            log.warning("static int8 with SmoothQuant alpha %s: %s", alpha, exc)
            continue
        entry, cos = measure(trial, "int8", False)
        log.info("static int8, SmoothQuant alpha %s: cosine vs fp32 mean %.5f min %.5f", alpha, cos.mean(), cos.min())
        if best is None or (cos.mean(), cos.min()) > best[:2]:
            if best is not None:
                (out / best[3].file).unlink()
            best = (float(cos.mean()), float(cos.min()), alpha, entry)
        else:
            (out / trial).unlink()
    if best is None:
        return None
    mean, worst, alpha, entry = best
    if mean < INT8_MIN_MEAN_COSINE or worst < INT8_MIN_COSINE:
        (out / entry.file).unlink()
        log.warning("static int8 is not accurate enough (cosine vs fp32: mean %.4f, min %.4f)", mean, worst)
        return None
    (out / entry.file).rename(out / file)
    entry.file = file
    entry.extra.update(int8_scheme="static", smooth_quant_alpha=alpha)
    return entry

"""The built-in calibration texts: what int8/fp16 graphs are checked (and int8 ranges calibrated) on by default."""

from __future__ import annotations

from importlib import resources


def default_calibration_texts() -> list[str]:
    text = resources.files("trt_embed.exporter").joinpath("calibration.txt").read_text()
    return [line for line in text.splitlines() if line.strip()]

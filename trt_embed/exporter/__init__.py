"""HF model (+ pooling head, + merged LoRA) -> ONNX -> optimized variants -> TensorRT plans."""

from trt_embed.exporter.export import ExportOptions, export_model

__all__ = ["ExportOptions", "export_model"]

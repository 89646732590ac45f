"""HF model -> graphs -> variants -> plans. PyTorch is imported only by the steps that trace a model, so
`trt-embed build-engine` and `inspect` work without the export extra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trt_embed.exporter.export import ExportOptions, export_model

__all__ = ["ExportOptions", "export_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trt_embed.exporter import export

        return getattr(export, name)
    raise AttributeError(name)

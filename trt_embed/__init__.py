"""trt-embed: compiled-graph inference for embedding models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trt_embed.version import __version__

if TYPE_CHECKING:
    from trt_embed.runtime import Runtime

__all__ = ["Runtime", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Runtime":
        from trt_embed.runtime import Runtime

        return Runtime
    raise AttributeError(name)

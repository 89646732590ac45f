"""The lean serving runtime: no torch, no transformers, no exporter imports."""

from trt_embed.runtime.artifact import Artifact
from trt_embed.runtime.runtime import Runtime

__all__ = ["Artifact", "Runtime"]

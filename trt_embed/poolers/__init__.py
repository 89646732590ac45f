"""Pooling heads: the NumPy math here (runtime fallback and test oracle), torch modules in `torch_pooling`."""

from trt_embed.poolers.numpy_pooling import POOLING_MODES, pool

__all__ = ["POOLING_MODES", "pool"]

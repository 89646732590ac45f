"""How a graph runs: the engine interface, one module per backend, and the backend choice table.

Knows nothing of requests or HTTP; backends import their libraries only when an engine is opened.
"""

from trt_embed.engines.base import Batch, Engine, EngineSpec
from trt_embed.engines.select import BACKEND_NAMES, Choice, Want, open_engine

__all__ = ["BACKEND_NAMES", "Batch", "Choice", "Engine", "EngineSpec", "Want", "open_engine"]

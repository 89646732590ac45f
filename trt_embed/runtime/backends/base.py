"""The one engine interface every backend implements."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from trt_embed.manifest import EngineEntry, ShapeProfile

Arrays = Mapping[str, npt.NDArray[np.generic]]


class Engine(abc.ABC):
    """Runs one engine file of an artifact. Public methods check state and shapes, then call the backend."""

    name: str = "engine"

    def __init__(self, entry: EngineEntry) -> None:
        self.entry = entry
        self.input_names = [t.name for t in entry.inputs]
        self.output_names = entry.output_names
        self._closed = False

    @property
    def profiles(self) -> list[ShapeProfile]:
        """Shape limits; empty means any batch and sequence length."""
        return self.entry.profiles

    def infer(self, inputs: Arrays, outputs: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        return self._infer(self._checked(inputs, outputs), list(outputs))

    def infer_batches(
        self, batches: Iterable[Arrays], outputs: Sequence[str]
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        """Run several batches; backends that can overlap copies with compute override this."""
        return [self.infer(batch, outputs) for batch in batches]

    def _checked(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        """The engine's inputs from `inputs`, after checking state, names and shape limits."""
        if self._closed:
            raise RuntimeError(f"{self.name} engine is closed")
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ValueError(f"{self.name}: missing inputs {missing}; engine takes {self.input_names}")
        unknown = [n for n in outputs if n not in self.output_names]
        if unknown:
            raise ValueError(f"{self.name}: unknown outputs {unknown}; engine gives {self.output_names}")
        batch, seq = inputs["input_ids"].shape
        if self.profiles and not any(p.fits(batch, seq) for p in self.profiles):
            raise ValueError(f"{self.name}: batch {batch} x seq {seq} fits none of the engine's profiles")
        return {n: inputs[n] for n in self.input_names}

    @abc.abstractmethod
    def _infer(self, inputs: Arrays, outputs: list[str]) -> dict[str, npt.NDArray[np.float32]]: ...

    def health(self) -> bool:
        return not self._closed

    def close(self) -> None:
        self._closed = True

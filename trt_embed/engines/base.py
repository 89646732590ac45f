"""The one engine interface every backend implements, the backend-neutral `Batch` and the `EngineSpec`.

An engine knows nothing of requests: it runs a `Batch` (padded token arrays, or ragged ones: token ids
concatenated with cumulative lengths, as text-embeddings-inference's backends take them) and declares what it
can take as data (`EngineSpec`), from which the runtime derives batching budgets and shapes.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from trt_embed.errors import EngineError
from trt_embed.manifest import EngineEntry, ShapeProfile

Arrays = Mapping[str, npt.NDArray[np.generic]]
Outputs = dict[str, npt.NDArray[np.float32]]
Layout = Literal["padded", "ragged"]
Device = Literal["cpu", "cuda"]


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What an engine takes, as data: layout, device, default budgets per call and shape profiles."""

    backend: str
    device: Device
    layout: Layout = "padded"
    max_batch_tokens: int = 8192  # padded tokens (padded layout) or real tokens (ragged) per call
    max_batch_size: int = 128
    profiles: tuple[ShapeProfile, ...] = ()  # empty: any batch and sequence length
    concurrent_calls: int = 1  # calls that may run at once (CPU engines with several streams)

    def fits(self, batch: int, seq: int) -> bool:
        """Whether the profiles (if any) take a padded batch of this shape."""
        return not self.profiles or any(p.fits(batch, seq) for p in self.profiles)

    def cost(self, lengths: Sequence[int]) -> int:
        """Tokens a batch of these input lengths costs the engine: padded or real."""
        if not lengths:
            return 0
        return self.batch_cost(len(lengths), max(lengths), sum(lengths))

    def batch_cost(self, size: int, width: int, real: int) -> int:
        """The same from a batch's size, longest input and real tokens (the scheduler grows a batch by these)."""
        return size * width if self.layout == "padded" else real


@dataclasses.dataclass
class Batch:
    """One engine call's inputs.

    padded: `input_ids`, `attention_mask`, `token_type_ids` of shape [B, S] (and `pooling_mask` for graphs
    that take one); ragged: `input_ids`, `token_type_ids` of shape [T] and `cu_seqlens` [B + 1]; image graphs:
    `pixel_values` [B, 3, H, W] (float32; NaFlex: patches, mask and shapes), with each image's cost in `lengths`.
    `lengths` are the real token counts per row, in row order.
    """

    layout: Layout
    arrays: dict[str, npt.NDArray[np.int64]]

    @classmethod
    def images(cls, arrays: Mapping[str, npt.NDArray[Any]], costs: list[int]) -> Batch:
        """An image graph's batch: `pixel_values` [B, 3, H, W] float32 (NaFlex: [B, max patches, patch * patch
        * 3] with `pixel_attention_mask` [B, max patches] and `spatial_shapes` [B, 2]); `lengths` holds each
        image's cost."""
        return cls("padded", dict(arrays), costs)

    lengths: list[int]

    @classmethod
    def padded(cls, arrays: Mapping[str, npt.NDArray[np.generic]]) -> Batch:
        """A padded batch of ready-made arrays; the real lengths come from `attention_mask`."""
        feeds = {name: np.asarray(value, dtype=np.int64) for name, value in arrays.items()}
        return cls("padded", feeds, [int(n) for n in feeds["attention_mask"].sum(axis=1)])

    @property
    def size(self) -> int:
        return len(self.lengths)

    @property
    def shape(self) -> tuple[int, int]:
        """(batch, padded sequence length); for ragged batches the longest row stands for the width."""
        if self.layout == "padded" and "input_ids" in self.arrays:
            rows, width = self.arrays["input_ids"].shape
            return int(rows), int(width)
        return self.size, max(self.lengths, default=0)


class Engine(abc.ABC):
    """Runs one engine file of an artifact. Public methods check state and shapes, then call the backend."""

    name: str = "engine"
    layout: Layout = "padded"
    device: Device = "cpu"

    def __init__(self, entry: EngineEntry) -> None:
        self.entry = entry
        self.input_names = [t.name for t in entry.inputs]
        self.output_names = entry.output_names
        self._closed = False

    @property
    def profiles(self) -> list[ShapeProfile]:
        """Shape limits; empty means any batch and sequence length."""
        return self.entry.profiles

    def spec(self, *, max_batch_tokens: int, max_batch_size: int, concurrent_calls: int = 1) -> EngineSpec:
        """This engine's facts with the budgets the runtime settled on."""
        return EngineSpec(
            backend=self.name,
            device=self.device,
            layout=self.layout,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            profiles=tuple(self.profiles),
            concurrent_calls=concurrent_calls,
        )

    def infer(self, batch: Batch, outputs: Sequence[str]) -> Outputs:
        return self._infer(self._checked(batch, outputs), list(outputs))

    def infer_batches(self, batches: Iterable[Batch], outputs: Sequence[str]) -> list[Outputs]:
        """Run several batches; backends that can overlap copies with compute override this."""
        return [self.infer(batch, outputs) for batch in batches]

    def _checked(self, batch: Batch, outputs: Sequence[str]) -> Arrays:
        """The engine's feeds from `batch`, after checking state, layout, names and shape limits."""
        if self._closed:
            raise EngineError(f"{self.name} engine is closed")
        if batch.layout != self.layout:
            raise ValueError(f"{self.name} takes {self.layout} batches, got a {batch.layout} one")
        missing = [n for n in self.input_names if n not in batch.arrays]
        if missing:
            raise ValueError(f"{self.name}: missing inputs {missing}; engine takes {self.input_names}")
        unknown = [n for n in outputs if n not in self.output_names]
        if unknown:
            raise ValueError(f"{self.name}: unknown outputs {unknown}; engine gives {self.output_names}")
        rows, seq = batch.shape
        if self.profiles and not any(p.fits(rows, seq) for p in self.profiles):
            raise ValueError(f"{self.name}: batch {rows} x seq {seq} fits none of the engine's profiles")
        return {n: batch.arrays[n] for n in self.input_names}

    @abc.abstractmethod
    def _infer(self, inputs: Arrays, outputs: list[str]) -> Outputs: ...

    def health(self) -> bool:
        return not self._closed

    def close(self) -> None:
        self._closed = True

"""One decoder call of a vision-language model: the images of a batch through the vision graph, token embeddings
looked up in the table, image features spliced in at the placeholder positions, padded into the decoder's
`inputs_embeds`, `attention_mask` and `position_ids` (see vlm/families.py for the graph contract)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trt_embed.engines.base import Batch
from trt_embed.manifest import Manifest
from trt_embed.runtime.types import PreparedInput
from trt_embed.runtime.vlm.families import ImageInput, VisionProcessor

RunVision = Callable[[dict[str, npt.NDArray[Any]], list[int]], Mapping[str, npt.NDArray[Any]]]
MAX_VISION_TOKENS = 16384  # image tokens per vision call: larger batches of images are split into several calls


class VlmBatcher:
    """Builds decoder batches from prepared VLM inputs; `run_vision(feeds, costs)` runs the vision graph."""

    def __init__(self, directory: Path, manifest: Manifest, processor: VisionProcessor) -> None:
        vlm = manifest.vlm or {}
        self.processor = processor
        self.table = np.load(directory / vlm["embeddings"], mmap_mode="r")  # [V, H], read rows on demand
        self.image_token_id = int(vlm["image_token_id"])
        self.padding_side = manifest.tokenizer.padding_side
        self.deepstack = int(vlm.get("deepstack_layers", 0))
        self.position_rows = int(vlm.get("position_rows", 1))

    def image_features(self, images: Sequence[ImageInput], run_vision: RunVision) -> list[dict[str, np.ndarray]]:
        """Per image, its feature rows (and deepstack rows), from as few vision calls as the budget allows."""
        out: list[dict[str, np.ndarray]] = []
        start = 0
        while start < len(images):
            end, budget = start, 0
            while end < len(images) and (end == start or budget + images[end].tokens <= MAX_VISION_TOKENS):
                budget += images[end].tokens
                end += 1
            group = images[start:end]
            outputs = run_vision(self.processor.vision_feeds(group), [i.tokens for i in group])
            out.extend(self.processor.features(outputs, group))
            start = end
        return out

    def batch(self, items: Sequence[PreparedInput], run_vision: RunVision) -> Batch:
        images = [image for item in items for image in item.features["images"]]
        features = iter(self.image_features(images, run_vision) if images else [])
        rows, width = len(items), max(len(item.features["input_ids"]) for item in items)
        hidden = int(self.table.shape[1])
        embeds = np.zeros((rows, width, hidden), dtype=np.float32)
        mask = np.zeros((rows, width), dtype=np.int64)
        positions = np.zeros((self.position_rows, rows, width), dtype=np.int64)
        deepstack = np.zeros((self.deepstack, rows, width, hidden), dtype=np.float32) if self.deepstack else None
        lengths = []
        for row, item in enumerate(items):
            ids = np.asarray(item.features["input_ids"], dtype=np.int64)
            length = len(ids)
            place = slice(width - length, width) if self.padding_side == "left" else slice(0, length)
            own = np.asarray(self.table[ids], dtype=np.float32)
            at = np.flatnonzero(ids == self.image_token_id)
            parts = [next(features) for _ in item.features["images"]]
            if parts:
                own[at] = np.concatenate([p["image_features"] for p in parts])
                if deepstack is not None:
                    deepstack[:, row, place][:, at] = np.concatenate([p["deepstack_features"] for p in parts], axis=1)
            embeds[row, place] = own
            mask[row, place] = 1
            positions[:, row, place] = item.features["position_ids"]
            lengths.append(length)
        arrays: dict[str, Any] = {
            "inputs_embeds": embeds,
            "attention_mask": mask,
            "position_ids": positions[0] if self.position_rows == 1 else positions,
        }
        if deepstack is not None:
            arrays["deepstack_embeds"] = deepstack
        return Batch("padded", arrays, lengths)

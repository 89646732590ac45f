"""Vision-language embedders (a vision tower whose image features are spliced into a decoder LLM's input): the
runtime half of a family, and the table of families.

A VLM artifact (manifest `vlm`) holds two graphs and a table:
- the vision graph (engine modality "image"): the family's inputs for the images of one call, concatenated along
  their first axis -> `image_features` [N, H] (N: the image tokens of all those images, in order; the projector or
  merger is inside the graph) and, for deepstack models, `deepstack_features` [L, N, H];
- the decoder graph (modality "text"): `inputs_embeds` [B, S, H] float32, `attention_mask` [B, S], `position_ids`
  [B, S] (or [K, B, S] for multimodal RoPE), and `deepstack_embeds` [L, B, S, H] where the model has them ->
  `sentence_embedding` [B, H], pooled in the graph (last token or mean, as the model defines it);
- `embeddings.npy`, the token embedding table [V, H], from which the runtime builds `inputs_embeds`: each
  placeholder token (`image_token_id`) is replaced by the next row of its image's features.

How a family plugs in, runtime side: a class with the `VisionProcessor` methods below, built from the manifest's
`vlm.processor` recipe (plain JSON data) and the named arrays the exporter saved (`vlm.arrays`), registered in
`FAMILIES` under the name the exporter writes into `vlm.family`. NumPy and Pillow only: no torch. The export side
is trt_embed/exporter/vlm.py.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from trt_embed.errors import ArtifactError

Array = npt.NDArray[Any]

# manifest `vlm.family` -> "module:Class" of its VisionProcessor (imported on first use)
FAMILIES: dict[str, str] = {
    "qwen2_vl": "trt_embed.runtime.vlm.qwen_vl:Qwen2VLProcessor",
    "qwen3_vl": "trt_embed.runtime.vlm.qwen_vl:Qwen3VLProcessor",
    "phi3_v": "trt_embed.runtime.vlm.phi3_v:Phi3VProcessor",
    "nemotron_vl": "trt_embed.runtime.vlm.nemotron_vl:NemotronVLProcessor",
    "llava_next": "trt_embed.runtime.vlm.llava_next:LlavaNextProcessor",
}


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """One preprocessed image: its share of the vision graph's inputs, how many placeholder tokens it expands
    into, and what the family needs later for positions (Qwen: the t, h, w patch grid)."""

    feeds: Mapping[str, Array]
    tokens: int
    grid: tuple[int, ...] = ()


class VisionProcessor(Protocol):
    """A family's image preprocessing, vision-call assembly and position scheme (see the module docstring)."""

    def __init__(self, recipe: Mapping[str, Any], arrays: Mapping[str, Array]) -> None: ...

    def image(self, image: Any) -> ImageInput:
        """An RGB Pillow image -> its vision inputs and token count (dynamic resolution, tiling, ...)."""

    def placeholder_image(self) -> Any:
        """The smallest image the model takes (a text input whose template holds an image gets this one)."""

    def vision_feeds(self, images: Sequence[ImageInput]) -> dict[str, Array]:
        """The vision graph's inputs for several images in one call."""

    def features(self, outputs: Mapping[str, Array], images: Sequence[ImageInput]) -> list[dict[str, Array]]:
        """The vision graph's outputs cut back into one `image_features` [n_i, H] (and `deepstack_features`
        [L, n_i, H]) per image, n_i == images[i].tokens."""

    def positions(self, ids: Array, images: Sequence[ImageInput], image_token_id: int) -> Array:
        """Position ids [K, S] of one input's expanded token ids (K = 1, or 3 for multimodal RoPE)."""


class ProcessorBase:
    """Defaults for families: images concatenated feed by feed, outputs cut by token counts, positions 0..S-1."""

    def __init__(self, recipe: Mapping[str, Any], arrays: Mapping[str, Array]) -> None:
        self.recipe = dict(recipe)
        self.arrays = dict(arrays)

    def vision_feeds(self, images: Sequence[ImageInput]) -> dict[str, Array]:
        names = list(images[0].feeds)
        return {name: np.ascontiguousarray(np.concatenate([i.feeds[name] for i in images])) for name in names}

    def features(self, outputs: Mapping[str, Array], images: Sequence[ImageInput]) -> list[dict[str, Array]]:
        bounds = np.cumsum([0, *(i.tokens for i in images)])
        found = outputs["image_features"].shape[0]
        if found != bounds[-1]:
            raise ArtifactError(f"the vision graph gave {found} image tokens for images of {bounds[-1]}")
        per_image: list[dict[str, Array]] = []
        for n in range(len(images)):
            part = {"image_features": outputs["image_features"][bounds[n] : bounds[n + 1]]}
            if "deepstack_features" in outputs:
                part["deepstack_features"] = outputs["deepstack_features"][:, bounds[n] : bounds[n + 1]]
            per_image.append(part)
        return per_image

    def positions(self, ids: Array, images: Sequence[ImageInput], image_token_id: int) -> Array:
        return np.arange(len(ids), dtype=np.int64)[None, :]


def processor_for(vlm: Mapping[str, Any], arrays: Mapping[str, Array]) -> VisionProcessor:
    """The runtime processor the manifest's `vlm.family` names, built from its recipe."""
    family = str(vlm.get("family"))
    if family not in FAMILIES:
        raise ArtifactError(
            f"vision-language family {family!r} is not known to this trt-embed (known: {', '.join(sorted(FAMILIES))}); "
            "upgrade trt-embed or re-export the model"
        )
    module, _, name = FAMILIES[family].partition(":")
    cls = getattr(importlib.import_module(module), name)
    processor: VisionProcessor = cls(vlm.get("processor", {}), arrays)
    return processor

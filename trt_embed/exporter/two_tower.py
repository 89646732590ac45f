"""Two-tower (CLIP, SigLIP, SigLIP 2 NaFlex) export: the text tower and the image tower, each with its projection,
as two graphs of one artifact.

`model.onnx` maps token ids to `sentence_embedding` (`get_text_features`), `vision.onnx` maps `pixel_values`
[B, 3, H, W] to `sentence_embedding` (`get_image_features`); each engine entry says which modality it serves,
and the manifest's `vision` records the image size, the per-image cost in patch tokens, the preprocessing recipe
(see trt_embed/runtime/images.py) and the text padding (SigLIP pads every text to its 64 positions and pools the
last one; CLIP pools the EOS token and pads to the longest). SigLIP 2 NaFlex (`Siglip2Model`) takes each image
as its patches instead: `pixel_values` [B, max patches, patch * patch * 3], `pixel_attention_mask` [B, max
patches] and `spatial_shapes` [B, 2]; the graph resizes the position embeddings to each image's patch grid
itself (transformers computes that antialiased bilinear resize as a matrix product, which traces), and the
manifest records the patch size and max patches. Both graphs are checked against PyTorch; int8 copies are kept
where they pass the accuracy rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_embed.engines.base import Batch
from trt_embed.errors import ExportError
from trt_embed.exporter import onnx_graph
from trt_embed.exporter.calibration import default_calibration_texts
from trt_embed.exporter.checks import FP16_MIN_COSINE, checked_onnx_entry
from trt_embed.exporter.int8 import INT8_MIN_COSINE, INT8_MIN_MEAN_COSINE
from trt_embed.exporter.interface import ExportJob, Supports
from trt_embed.exporter.options import EXACT_MIN_COSINE, ExportOptions, normalized_by_default, precisions, tool_versions
from trt_embed.exporter.source import optional_json, source_record
from trt_embed.exporter.tokenizer import tokenizer_hashes, tokenizer_to_artifact
from trt_embed.exporter.variants import calibration_ranges
from trt_embed.manifest import EngineEntry, Manifest, Pooling, TensorSpec
from trt_embed.runtime.batching.batch import pad
from trt_embed.runtime.images.preprocess import ImageRecipe, image_inputs, stack
from trt_embed.runtime.text.tokenizer import TextTokenizer
from trt_embed.zoo import ZooEntry

log = logging.getLogger("trt_embed.export")
Measure = Callable[[str, str], tuple[EngineEntry, np.ndarray]]  # (file, precision) -> its checked entry, cosines


class TextTower(torch.nn.Module):
    """input_ids (+ attention_mask) -> projected text features (`get_text_features`)."""

    def __init__(self, model: Any, use_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.input_names = ["input_ids", "attention_mask"] if use_mask else ["input_ids"]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return _features(out)


class ImageTower(torch.nn.Module):
    """pixel_values [B, 3, H, W] (NaFlex: with pixel_attention_mask and spatial_shapes) -> projected image
    features (`get_image_features`), the inputs given in the order of `input_names`."""

    def __init__(self, model: Any, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(**dict(zip(self.input_names, inputs, strict=True))))


def _features(out: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose `pooler_output` holds the projected features; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TwoTowerExporter:
    label = "two-tower models"
    supports = Supports(lora=False, pooling=False, matryoshka=False)

    def export(self, job: ExportJob) -> Manifest:
        entry, opts, source = job.entry, job.opts, job.st.transformer_dir
        text_cfg, vision_cfg = dict(job.config.get("text_config") or {}), dict(job.config.get("vision_config") or {})
        positions = int(text_cfg.get("max_position_embeddings", 77))
        max_len = int(opts.max_seq_len or positions)
        if max_len > positions:
            raise ExportError(f"max sequence length {max_len} exceeds the text tower's {positions} positions")
        lower = bool(entry.recipe.get("lower_case"))  # SigLIP 2: transformers' Siglip2Tokenizer lowercases
        side = entry.padding_side  # the tokenizer class's own side, where tokenizer_config.json names none
        info = tokenizer_to_artifact(source, job.out, model_config=text_cfg, padding_side=side, do_lower_case=lower)
        fixed_length = bool(entry.recipe.get("pad_to_max_length"))
        use_mask = _uses_attention_mask(optional_json(source / "tokenizer_config.json"), entry)
        tokenizer = TextTokenizer(job.out / "tokenizer", info, max_len)
        recipe = _recipe(source, entry, vision_cfg)
        loaded = _load(source, entry)
        tokens = tokenizer.encode(opts.calibration_texts or default_calibration_texts())
        arrays = pad(tokens.ids, None, pad_id=info.pad_token_id, length=max_len if fixed_length else None)
        text_tower = TextTower(loaded, use_mask).eval()
        image_feeds = stack([image_inputs(image, recipe) for image in check_images()])
        engines: list[EngineEntry] = []
        vectors: dict[str, np.ndarray] = {}
        for modality, tower, feeds, file in (
            ("text", text_tower, {name: arrays[name] for name in text_tower.input_names}, "model.onnx"),
            ("image", ImageTower(loaded, list(image_feeds)).eval(), image_feeds, "vision.onnx"),
        ):
            vectors[modality] = _tower_graphs(job.out, tower, feeds, file, modality, opts, engines)
        dim = int(vectors["text"].shape[-1])
        return Manifest(
            architecture=entry.architecture,
            family=entry.family,
            hidden_size=dim,
            embedding_dim=dim,
            pooling=Pooling(mode=entry.default_pooling),
            max_seq_length=max_len,
            tokenizer=info,
            source=source_record(job.model, job.model_dir, opts.revision, source),
            normalize=normalized_by_default(opts, job.st.normalize),
            vocab_size=int(text_cfg["vocab_size"]) if text_cfg.get("vocab_size") else None,
            calibration=calibration_ranges(np.concatenate([vectors["text"], vectors["image"]]), None),
            engines=engines,
            files=tokenizer_hashes(job.out, info),
            vision={
                "text_graph": "model.onnx",
                "image_graph": "vision.onnx",
                **_image_shape(recipe, entry, vision_cfg),
                "preprocess": recipe.to_dict(),
                "text_padding": max_len if fixed_length else None,
            },
        )


TWO_TOWER = TwoTowerExporter()


def _load(source: Path, entry: ZooEntry) -> Any:
    import transformers

    log.info("loading the %s weights into PyTorch", entry.architecture)
    try:
        return getattr(transformers, entry.loader).from_pretrained(str(source), attn_implementation="eager").eval()
    except Exception as exc:
        raise ExportError(f"{source}: {entry.loader} cannot load this checkpoint ({exc})") from exc


def _tower_graphs(
    out: Path,
    tower: torch.nn.Module,
    feeds: dict[str, np.ndarray],
    file: str,
    modality: str,
    opts: ExportOptions,
    engines: list[EngineEntry],
) -> np.ndarray:
    """Trace one tower, check it against PyTorch, add its graph and reduced copies to `engines`; returns the
    tower's PyTorch vectors."""
    log.info("exporting the %s tower and checking it against PyTorch", modality)
    with torch.no_grad():
        reference: np.ndarray = tower(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    _trace(tower, feeds, out / file, modality)
    inputs = [TensorSpec(n, str(v.dtype), _axes(v, modality)) for n, v in feeds.items()]
    outputs = [TensorSpec("sentence_embedding", "float32", ["batch", int(reference.shape[-1])])]
    batch = Batch("padded", dict(feeds), [1] * len(reference))

    def measured(name: str, precision: str) -> tuple[EngineEntry, np.ndarray]:
        return checked_onnx_entry(
            out,
            name,
            batch,
            reference,
            precision=precision,
            inputs=inputs,
            outputs=outputs,
            tools=tool_versions(),
            modality=modality,
        )

    base, cos = measured(file, "fp32")
    if cos.min() < EXACT_MIN_COSINE:
        raise ExportError(f"the exported {modality} graph does not match PyTorch (min cosine {cos.min():.6f})")
    engines.append(base)
    for precision, required in precisions(opts.precision).items():
        if precision != "fp32":
            reduced = reduced_copy(out, file, precision, measured)
            if reduced is not None:
                engines.append(reduced)
            elif required:
                raise ExportError(f"the {precision} {modality} graph is not accurate enough; export with fp32")
    return reference


def _image_shape(recipe: ImageRecipe, entry: ZooEntry, vision_cfg: dict[str, Any]) -> dict[str, Any]:
    """The manifest's image facts: the fixed image size and its cost in patch tokens (+ CLIP's class token), or
    NaFlex's patch size and max patches per image (the graph's patch axis; each image costs its own patches)."""
    if recipe.patches is not None:
        patch, max_patches = recipe.patches
        return {"patch_size": patch, "max_num_patches": max_patches, "image_tokens": max_patches}
    patch = int(vision_cfg.get("patch_size", 32))
    height, width = recipe.output_size
    cls_token = 1 if entry.recipe.get("class_token") else 0
    return {"image_size": [height, width], "image_tokens": (height // patch) * (width // patch) + cls_token}


def _axes(value: np.ndarray, modality: str) -> list[str | int]:
    """A graph input's shape: the batch axis, then the sequence axis of token inputs; image inputs fix the rest."""
    if modality == "text":
        return ["batch", "sequence"]
    return ["batch", *(int(d) for d in value.shape[1:])]


def reduced_copy(out: Path, file: str, precision: str, measured: Measure) -> EngineEntry | None:
    """The fp16 (mixed precision, see `fp16_from_onnx`) or int8 (dynamic, per channel) copy of an fp32 graph,
    kept only if it passes the repo's accuracy rule against the fp32 reference (fp16: min cosine 0.999; int8: mean
    0.99, min 0.97)."""
    name = file.replace(".onnx", f".{precision}.onnx")
    try:
        if precision == "fp16":
            onnx_graph.fp16_from_onnx(out / file, out / name)
        else:
            onnx_graph.int8_from_onnx(out / file, out / name)
        entry, cos = measured(name, precision)
    except Exception as exc:  # a graph onnxruntime cannot convert or run in this precision is not shipped
        log.warning("%s copy of %s failed (%s); not shipping it", precision, file, exc)
        (out / name).unlink(missing_ok=True)
        return None
    if precision == "fp16":
        ok = cos.min() >= FP16_MIN_COSINE
    else:
        ok = cos.mean() >= INT8_MIN_MEAN_COSINE and cos.min() >= INT8_MIN_COSINE
    if not ok:
        log.warning(
            "%s: cosine vs fp32 mean %.4f, min %.4f; not accurate enough, not shipping it", name, cos.mean(), cos.min()
        )
        (out / name).unlink()
        return None
    return entry


def _trace(tower: torch.nn.Module, feeds: dict[str, np.ndarray], path: Path, modality: str) -> None:
    names = list(feeds)
    axes = {n: ({0: "batch", 1: "sequence"} if modality == "text" else {0: "batch"}) for n in names}
    axes["sentence_embedding"] = {0: "batch"}
    example = tuple(torch.from_numpy(v[:2]) for v in feeds.values())
    onnx_graph.onnx_from_module(tower, example, path, names, ["sentence_embedding"], axes)


def _uses_attention_mask(tok_config: dict[str, Any], entry: ZooEntry) -> bool:
    """Whether the processor hands the model an attention mask: SigLIP's own tokenizer does not (it pads to 64
    and the model attends to every position); SigLIP 2's Gemma tokenizer and CLIP's do."""
    names = tok_config.get("model_input_names")
    if isinstance(names, list):
        return "attention_mask" in names
    return tok_config.get("tokenizer_class") not in entry.recipe.get("maskless_tokenizers", [])


def _recipe(source: Path, entry: ZooEntry, vision_cfg: dict[str, Any]) -> ImageRecipe:
    config = optional_json(source / "preprocessor_config.json")
    recipe = ImageRecipe.from_processor_config(config, entry.recipe["image_defaults"])
    if recipe.patches is not None or entry.recipe.get("naflex"):
        return _patch_recipe(source, recipe, vision_cfg)
    size = int(vision_cfg.get("image_size", 224))
    if recipe.output_size != (size, size):
        raise ExportError(
            f"{source}: preprocessor_config.json makes {recipe.output_size[0]}x{recipe.output_size[1]} images but the "
            f"vision tower takes {size}x{size}"
        )
    return recipe


def _patch_recipe(source: Path, recipe: ImageRecipe, vision_cfg: dict[str, Any]) -> ImageRecipe:
    """NaFlex: the processor must cut the tower's patch size (its max patches may differ from the position grid's
    `num_patches`: the graph resizes the position embeddings to each image's grid)."""
    patch = int(vision_cfg.get("patch_size", 16))
    if recipe.patches is None or recipe.patches[0] != patch:
        made = "no max_num_patches" if recipe.patches is None else f"patch_size {recipe.patches[0]}"
        raise ExportError(
            f"{source}: preprocessor_config.json has {made} but the NaFlex vision tower takes {patch}x{patch} "
            "patches; give it max_num_patches and that patch_size (Siglip2ImageProcessor's keys)"
        )
    return recipe


def check_images() -> list[Any]:
    """Deterministic test images of several sizes and kinds for the graph checks (noise, gradients, flat)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 97 * 131 * 3).reshape(97, 131, 3).astype(np.uint8)
    return [
        Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)),
        Image.fromarray(ramp),
        Image.new("RGB", (50, 400), (200, 30, 90)),
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L"),
        Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).convert("P"),
        Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)),
    ]

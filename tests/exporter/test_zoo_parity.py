"""Every zoo architecture: tiny model exported and embedded matches PyTorch; batching and padding are invisible."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trt_embed.engines.base import Batch
from trt_embed.poolers import pool
from trt_embed.runtime import Runtime
from trt_embed.zoo import load_zoo

# Encoder families with a transformers class to compare with. Remote-code entries are compared with outputs of
# their original code in test_golden.py; decoder LLMs (causal or bidirectional masks, padding sides) in
# test_decoders.py; two-tower models (CLIP, SigLIP) against get_text_features / get_image_features in
# tests/runtime/test_multimodal.py; vision-language models (inputs_embeds decoders) in test_vlm.py and
# test_vlm_remote.py.
# Sparse and multi-vector heads (recipe `head`, or a SPLADE module in the tiny checkpoint) are checked against
# their own references in test_heads.py / test_multi_vector.py.
ARCHITECTURES = sorted(
    name
    for name, entry in load_zoo().items()
    if entry.family not in ("decoder", "two_tower", "vlm")
    and not entry.recipe.get("head")
    and "st_modules" not in entry.tiny
)
WITH_TRANSFORMERS_CLASS = [name for name in ARCHITECTURES if "golden" not in load_zoo()[name].tiny]
TEXTS = [
    "hello",
    "the cat read a paper in the city at night",
    " ".join(["what time is it in the world of music and light"] * 8),
    "blue water",
    "how fast is a large dog",
]


def torch_reference(model_dir: Path, architecture: str, texts: list[str], runtime: Runtime) -> np.ndarray:
    """HF model (the class that saved the checkpoint, default attention) + NumPy pooling, unnormalized."""
    import torch
    import transformers

    from trt_embed.zoo import zoo_entry

    tiny = zoo_entry(architecture).tiny
    model = getattr(transformers, tiny["model_class"]).from_pretrained(str(model_dir)).eval()
    encoder = model.base_model
    rows = []
    for text in texts:  # one at a time: no padding in the reference
        ids = runtime.tokenizer.encode([text]).ids[0]
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            hidden = encoder(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
        rows.append(pool(runtime.manifest.pooling.mode, hidden.numpy(), np.ones((1, len(ids)), dtype=np.int64))[0])
    return np.stack(rows)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("architecture", WITH_TRANSFORMERS_CLASS)
def test_matches_pytorch(
    architecture: str, tiny_model: Callable[[str], Path], tiny_artifact: Callable[[str], Path]
) -> None:
    with Runtime.load(tiny_artifact(architecture), backend="onnxruntime-cpu") as runtime:
        got = runtime.embed(TEXTS, normalize=False)
        reference = torch_reference(tiny_model(architecture), architecture, TEXTS, runtime)
        assert got.shape == reference.shape
        assert cosine(got, reference).min() >= 0.99999
        np.testing.assert_allclose(got, reference, atol=1e-4, rtol=1e-4)
        lengths = runtime.tokenize(TEXTS).lengths
        assert max(lengths) > 3 * min(lengths), "the batch must mix short and long inputs"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_batched_equals_single(architecture: str, tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact(architecture), backend="onnxruntime-cpu") as runtime:
        batched = runtime.embed(TEXTS)
        single = np.concatenate([runtime.embed([t]) for t in TEXTS])
        np.testing.assert_allclose(batched, single, atol=2e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padding_does_not_change_results(architecture: str, tiny_artifact: Callable[[str], Path]) -> None:
    from trt_embed.runtime.batching.batch import pad

    with Runtime.load(tiny_artifact(architecture), backend="onnxruntime-cpu") as runtime:
        tokenized = runtime.tokenize(TEXTS)
        info = runtime.manifest.tokenizer
        outputs = []
        for extra in (0, 17):
            arrays = pad(
                tokenized.ids,
                tokenized.type_ids,
                pad_id=info.pad_token_id,
                side=info.padding_side,
                length=max(tokenized.lengths) + extra,
            )
            outputs.append(runtime.engine.infer(Batch.padded(arrays), ["sentence_embedding"])["sentence_embedding"])
        np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-5)

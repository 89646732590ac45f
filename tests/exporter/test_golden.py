"""Remote-code architectures against outputs of their ORIGINAL code (tests/golden, see its READMEs):
the exported artifact, run by the runtime on each golden batch, reproduces token states, pooled vectors and
embeddings, for every variant (jina-v3: each task's LoRA merged)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_models import GOLDEN

from trt_embed.artifact import Artifact
from trt_embed.engines.base import Batch
from trt_embed.runtime import Runtime
from trt_embed.runtime.outputs.postprocess import finish
from trt_embed.zoo import load_zoo

# golden folder -> the zoo entry whose tiny model is that folder's checkpoint
FOLDERS = {
    entry.tiny["golden"]: name
    for name, entry in sorted(load_zoo().items())
    if "golden" in entry.tiny and entry.family != "vlm"  # vision-language goldens: tests/exporter/test_vlm_remote.py
}
BATCHES = range(6)
ATOL = 1e-4
MIN_COSINE = 0.99999


def golden(folder: str) -> dict[str, np.ndarray]:
    path = GOLDEN / folder / "golden.npz"
    with np.load(path) as data:
        return dict(data)


def golden_prefix(variant: str, variants: list[str]) -> str:
    """Array-name prefix of a variant: `` for single-variant models, jina's `noadapter_` for its base,
    `retrieval_query_` for task `retrieval.query`."""
    if variant == "base":
        return "noadapter_" if len(variants) > 1 else ""
    return variant.replace(".", "_").replace("-", "_") + "_"


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def run(runtime: Runtime, data: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    feeds = {name: data[f"b{i}_{name}"] for name in runtime.engine.input_names}
    return runtime.engine.infer(Batch.padded(feeds), ["sentence_embedding", "token_embeddings"])


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_artifact_matches_original_code(folder: str, tiny_artifact: Callable[[str], Path]) -> None:
    data = golden(folder)
    artifact = tiny_artifact(FOLDERS[folder])
    variants = Artifact.open(artifact).variants
    for variant in variants:
        prefix = golden_prefix(variant, variants)
        with Runtime.load(artifact, backend="onnxruntime-cpu", variant=variant) as runtime:
            mode = runtime.manifest.pooling.mode
            for i in BATCHES:
                out = run(runtime, data, i)
                real = data[f"b{i}_attention_mask"].astype(bool)
                expected = data[f"b{i}_{prefix}last_hidden_state"]
                np.testing.assert_allclose(out["token_embeddings"][real], expected[real], atol=ATOL, rtol=ATOL)
                pooled = out["sentence_embedding"]
                np.testing.assert_allclose(pooled, data[f"b{i}_{prefix}pooled_{mode}"], atol=ATOL, rtol=ATOL)
                embedding = finish(pooled, dimensions=None, normalize=runtime.manifest.normalize)
                assert cosine(embedding, data[f"b{i}_{prefix}embedding"]).min() >= MIN_COSINE
    golden_variants = {k[3 : -len("last_hidden_state")] for k in data if k.startswith("b0_") and "last_hidden" in k}
    assert {golden_prefix(v, variants) for v in variants} == golden_variants, "every golden variant is exported"


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_graphs_use_standard_onnx_ops(folder: str, tiny_artifact: Callable[[str], Path]) -> None:
    """Plain opset-17 ONNX (no contrib ops), so TensorRT and every onnxruntime provider can take it."""
    import onnx

    graph = onnx.load(tiny_artifact(FOLDERS[folder]) / "model.onnx")
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}


def test_jina_variants_are_the_tasks_with_their_instructions(tiny_artifact: Callable[[str], Path]) -> None:
    """One variant per task; each records its adapter and its instruction prompt; a mixed-task batch of the
    original code is each row run through its own task's variant."""
    data = golden("jina_v3")
    artifact = tiny_artifact(FOLDERS["jina_v3"])
    manifest = Artifact.open(artifact).manifest
    tasks = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
    assert list(manifest.lora_adapters) == tasks
    assert [manifest.lora_adapters[t]["task_index"] for t in tasks] == list(range(5))
    assert manifest.prompts["retrieval.query"].startswith("Represent the query")
    assert manifest.matryoshka_dimensions == [32, 64]  # config matryoshka_dimensions
    assert len({manifest.lora_adapters[t]["sha256"] for t in tasks}) == len(tasks)
    for row, task in enumerate(data["b5_mixed_adapter_mask"]):
        with Runtime.load(artifact, backend="onnxruntime-cpu", variant=tasks[task]) as runtime:
            embedding = finish(run(runtime, data, 5)["sentence_embedding"], dimensions=None, normalize=True)
        assert cosine(embedding[row], data["b5_mixed_embedding"][row]) >= MIN_COSINE


def test_jina_task_through_the_runtime_api(tiny_artifact: Callable[[str], Path]) -> None:
    """`model=<task>` runs that task's variant; its prompt is the task instruction, as jina's `.encode` does."""
    with Runtime.load(tiny_artifact(FOLDERS["jina_v3"]), backend="onnxruntime-cpu") as runtime:
        texts = ["what time is it", "the river in the city"]
        task = runtime.embed(texts, model="retrieval.query", prompt_name="retrieval.query")
        instruction = runtime.manifest.prompts["retrieval.query"]
        by_hand = runtime.embed([instruction + t for t in texts], model="retrieval.query")
        np.testing.assert_allclose(task, by_hand, atol=1e-6)
        base = runtime.embed([instruction + t for t in texts])
        assert cosine(task, base).max() < 0.9999, "the task's LoRA changes the embedding"


def test_lora_name_may_not_shadow_a_task(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    from trt_embed.errors import ExportError
    from trt_embed.exporter import ExportOptions, export_model

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    options = ExportOptions(precision="fp32", lora={"retrieval.query": str(adapter)})
    with pytest.raises(ExportError, match=r"already has a variant 'retrieval\.query'"):
        export_model(str(tiny_model(FOLDERS["jina_v3"])), tmp_path / "artifact", options)


def test_nomic_matryoshka_layer_norm_recipe(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    """nomic v1.5's Matryoshka recipe (layer_norm, slice, normalize) from the manifest, in the runtime's
    post-processing; full-size embeddings stay plain mean + normalize (sentence-transformers)."""
    from trt_embed.exporter import ExportOptions, export_model

    data = golden("nomic_bert")
    options = ExportOptions(precision="fp32", matryoshka_dims=[32, 64])  # as `--matryoshka-dims 32,64`
    export_model(str(tiny_model(FOLDERS["nomic_bert"])), tmp_path / "artifact", options)
    with Runtime.load(tmp_path / "artifact", backend="onnxruntime-cpu") as runtime:
        assert runtime.manifest.matryoshka_transform == "layer_norm"
        assert runtime.manifest.prompts["search_query"] == "search_query: "
        for i in BATCHES:
            pooled = run(runtime, data, i)["sentence_embedding"]
            full = finish(pooled, dimensions=None, normalize=True, transform="layer_norm")
            assert cosine(full, data[f"b{i}_embedding"]).min() >= MIN_COSINE
            half = finish(pooled, dimensions=32, normalize=True, transform="layer_norm")  # what `embed` does
            reference = data[f"b{i}_embedding_ln"][:, :32]
            reference = reference / np.linalg.norm(reference, axis=-1, keepdims=True)
            assert cosine(half, reference).min() >= MIN_COSINE
            np.testing.assert_allclose(half, reference, atol=2e-5)  # plain truncation is off by ~1e-3 here

"""ONNX steps: `onnx_from_graph` (trace), `fused_from_onnx`, `packed_from_onnx`, `int8_from_onnx`,
`fp16_from_onnx` (mixed precision)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trt_embed.errors import ExportError
from trt_embed.exporter.external_data import data_files, place_onnx

if TYPE_CHECKING:  # torch only for the trace: the graph passes below run without it (`trt-embed build-engine`)
    import torch

    from trt_embed.exporter.graph import EmbeddingGraph

log = logging.getLogger("trt_embed.export")
OPSET = 17
DYNAMIC = {0: "batch", 1: "sequence"}


def onnx_from_graph(graph: EmbeddingGraph, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace the graph with dynamic batch and sequence axes.

    The example must be a padded batch of at least two rows of different lengths: the tracer bakes in
    Python-level branches, and an all-ones mask would trace the 'no padding' branch of the mask code.
    """

    dynamic_axes = {name: DYNAMIC for name in graph.input_names}
    dynamic_axes.update({name: DYNAMIC for name in graph.output_names})  # token outputs: [batch, sequence, ...]
    dynamic_axes["sentence_embedding"] = {0: "batch"}
    onnx_from_module(graph, example, path, graph.input_names, graph.output_names, dynamic_axes)


def onnx_from_module(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Trace `module` to `path` (TorchScript exporter, our opset, constants folded)."""
    import torch

    # Exported aside: a graph over 2 GB comes out as one file per weight, gathered into `<name>.data`.
    with warnings.catch_warnings(), torch.no_grad(), tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        warnings.simplefilter("ignore")
        exported = Path(tmp) / path.name
        torch.onnx.export(
            module,
            example,
            str(exported),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        place_onnx(exported, path)


def fused_from_onnx(src: Path, dst: Path, *, model_type: str, num_heads: int, hidden_size: int) -> None:
    """Apply onnxruntime's transformer fusions (Attention, SkipLayerNorm, BiasGelu, ...) offline."""
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
    fused = model.get_fused_operator_statistics()
    log.info("onnxruntime fusions: %s", {k: v for k, v in fused.items() if v})
    model.save_model_to_file(str(dst))


def packed_from_onnx(src: Path, dst: Path) -> bool:
    """onnxruntime's packing mode of a fused graph: padding is removed after the embeddings (RemovePadding),
    attention runs over the real tokens only (PackedAttention, cumulative lengths) and padding is restored
    before pooling, so no padded token is computed in the encoder layers. CUDA-only operators: the graph runs
    on onnxruntime-cuda. False (nothing written) when the graph has no attention onnxruntime can pack."""
    import onnx
    from onnxruntime.transformers.convert_to_packing_mode import PackingMode
    from onnxruntime.transformers.onnx_model import OnnxModel

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = onnx.load(str(src))
    if not any(n.op_type in ("Attention", "MultiHeadAttention") for n in model.graph.node):
        return False
    packing = PackingMode(OnnxModel(model))
    try:
        packing.convert()
    except Exception as exc:  # onnxruntime's converter raises bare errors for graphs it cannot pack
        log.info("onnxruntime cannot pack %s: %s", src.name, exc)
        return False
    ops = {n.op_type for n in packing.model.model.graph.node}
    if "RemovePadding" not in ops or ops & {"Attention", "MultiHeadAttention"}:
        return False
    onnx.save(packing.model.model, str(dst))
    return True


class _DropFrom(logging.Filter):
    """Drops records logged from files under a package (onnxruntime warns through the root logger)."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.part = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or self.part not in record.pathname


@contextlib.contextmanager
def quiet_root_warnings(package: str) -> Iterator[None]:
    """Silence `package`'s warnings sent to the root logger (e.g. "consider pre-processing before
    quantization", advice for image models that does not apply here)."""
    drop = _DropFrom(package)
    logging.root.addFilter(drop)
    try:
        yield
    finally:
        logging.root.removeFilter(drop)


def int8_from_onnx(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the MatMul weights, per output channel.

    Per-channel weight scales keep the error of each projection small; activations are quantized per
    tensor at run time. Export measures the result against fp32 and keeps it only if it is accurate.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet_root_warnings("onnxruntime"):
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=True,
                use_external_data_format=bool(data_files(src)),  # writes `<dst name>.data`
                op_types_to_quantize=["MatMul"],
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
            )
    except Exception as exc:
        raise ExportError(f"int8 quantization failed: {exc}") from exc


# Ops that overflow or lose too much precision in fp16: normalization statistics, softmax, reductions.
FP32_OPS = (
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceL2",
    "ReduceSumSquare",
    "Pow",
    "Sqrt",
)


def fp16_from_onnx(src: Path, dst: Path) -> list[str]:
    """Mixed-precision copy of an fp32 graph: fp16 weights and matmuls, fp32 where fp16 is not safe.

    Kept in fp32: the ops in `FP32_OPS`, the rotary position path (everything feeding Cos/Sin: positions
    above 2048 are not exact in fp16), index math on ranges (what feeds a Range, and a reduction of range-derived
    values with no matmul above it, such as NaFlex's position-resize weights, with its inputs) and the pooling
    tail (everything after any other ReduceSum/ReduceMax: sums over long sequences overflow fp16). Inputs and
    outputs keep their dtypes. Returns the op types kept in fp32.
    TensorRT-RTX networks are strongly typed, so this graph *is* the fp16 engine's precision plan.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    _type_fused_outputs(model)
    nodes = list(model.graph.node)
    keep = {n.name for n in nodes if n.op_type in FP32_OPS}
    keep |= _ancestors(nodes, {n.name for n in nodes if n.op_type in ("Cos", "Sin")})
    ranges = _ancestors(nodes, {n.name for n in nodes if n.op_type == "Range"}, values_only=True)
    reductions = {n.name for n in nodes if n.op_type in ("ReduceSum", "ReduceMax")}
    weights = {n.name for n in nodes if n.op_type in ("MatMul", "Gemm")}
    index_math = {r for r in reductions if (above := _ancestors(nodes, {r})) & ranges and not above & weights}
    keep |= ranges | _ancestors(nodes, index_math)
    # Pooling reduces with ReduceSum (mean) or ReduceMax (max); RMSNorm's ReduceMean is not a pooling tail.
    keep |= _descendants(nodes, reductions - index_math)
    try:
        converted = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(FP32_OPS), node_block_list=sorted(keep)
        )
    except Exception as exc:
        raise ExportError(f"fp16 conversion of {src.name} failed: {exc}") from exc
    _unique_nodes(converted)
    onnx.save(converted, str(dst))
    return sorted({n.op_type for n in nodes if n.name in keep})


def _type_fused_outputs(model: Any) -> None:
    """Record the element types of onnxruntime's fused ops' outputs (BiasGelu, SkipLayerNormalization,
    Attention, ...) and of what follows them. onnx's shape inference does not know these ops, so their outputs
    and everything downstream have no type; the fp16 converter then inserts no Cast in front of an op kept in
    fp32 that reads one (the fused MLM head's BiasGelu -> LayerNormalization), and onnxruntime refuses the graph.
    In an fp32 graph these outputs are float, but EmbedLayerNormalization's mask index (int32)."""
    import onnx

    float_type, int32_type = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    skeleton = onnx.ModelProto()  # the graph without weights (typed inputs instead): inference needs types only
    skeleton.CopyFrom(model)
    del skeleton.graph.initializer[:]
    skeleton.graph.input.extend(
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer
    )
    for _ in range(len(model.graph.node)):  # alternate with onnx's inference until nothing new is typed
        inferred = onnx.shape_inference.infer_shapes(skeleton)
        del skeleton.graph.value_info[:]
        skeleton.graph.value_info.extend(inferred.graph.value_info)
        known = {
            v.name: v.type.tensor_type.elem_type
            for v in [*skeleton.graph.input, *skeleton.graph.value_info, *skeleton.graph.output]
            if v.type.tensor_type.elem_type
        }
        added = 0
        for node in skeleton.graph.node:
            if node.domain != "com.microsoft" or not any(known.get(i) == float_type for i in node.input):
                continue
            for index, name in enumerate(node.output):
                if name and name not in known:
                    mask = node.op_type == "EmbedLayerNormalization" and index == 1
                    skeleton.graph.value_info.append(
                        onnx.helper.make_tensor_value_info(name, int32_type if mask else float_type, None)
                    )
                    known[name] = int32_type if mask else float_type
                    added += 1
        if not added:
            break
    del model.graph.value_info[:]
    model.graph.value_info.extend(skeleton.graph.value_info)


def _ancestors(nodes: list[Any], names: set[str], *, values_only: bool = False) -> set[str]:
    """The nodes `names` depend on (and themselves); `values_only`: neither through nor including a Shape node,
    which reads only its input's shape (keeping it fp32 would only make the converter cast its input)."""
    producer = {out: n for n in nodes for out in n.output}
    by_name = {n.name: n for n in nodes}
    found, stack = set(names), [by_name[n] for n in names]
    while stack:
        for tensor in stack.pop().input:
            parent = producer.get(tensor)
            if parent is None or parent.name in found or (values_only and parent.op_type == "Shape"):
                continue
            found.add(parent.name)
            stack.append(parent)
    return found


def _unique_nodes(model: Any) -> None:
    """Drop repeated copies of one node. onnxruntime 1.31's converter adds a Cast (same name, same output) for
    every fp32 consumer of an fp16 tensor; two consumers made the graph invalid ("two nodes with same node
    name"). Later versions share one Cast; this makes either converter's output valid."""
    seen: dict[str, bytes] = {}
    kept = []
    for node in model.graph.node:
        body = node.SerializeToString()
        if seen.get(node.name) == body:
            continue
        seen.setdefault(node.name, body)
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _descendants(nodes: list[Any], names: set[str]) -> set[str]:
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for tensor in n.input:
            consumers.setdefault(tensor, []).append(n)
    by_name = {n.name: n for n in nodes}
    found, stack = set(names), [by_name[n] for n in names]
    while stack:
        for tensor in stack.pop().output:
            for child in consumers.get(tensor, []):
                if child.name not in found:
                    found.add(child.name)
                    stack.append(child)
    return found

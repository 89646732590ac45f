"""ONNX graphs past protobuf's 2 GB limit: weights in one `<graph>.data` file next to the graph.

The TorchScript exporter writes the weights of a graph over 2 GB as one file per tensor; `place_onnx` gathers
them into `<graph>.data` (streamed, 4 KiB aligned for memory mapping) with relative locations, so the artifact
stays relocatable. The manifest records each data file's sha256 next to the graph's (see `data_hashes`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from trt_embed.manifest import sha256_file

INLINE_LIMIT = 1_800_000_000  # bytes: larger graphs keep their weights in `<graph>.data`
_ALIGN = 4096


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    from onnx.external_data_helper import _get_all_tensors  # initializers and Constant attributes, subgraphs too

    yield from _get_all_tensors(model)


def data_files(path: Path) -> list[str]:
    """Names of the external data files a graph refers to (relative to its directory)."""
    model = onnx.load(str(path), load_external_data=False)
    return sorted({ExternalDataInfo(t).location for t in _tensors(model) if uses_external_data(t)})


def data_hashes(path: Path) -> dict[str, dict[str, str]]:
    """`EngineEntry.extra` for a graph: `{"external_data": {file: sha256}}`, or {} for a self-contained one."""
    files = data_files(path)
    if not files:
        return {}
    return {"external_data": {name: sha256_file(path.parent / name) for name in files}}


def place_onnx(exported: Path, target: Path, *, inline_limit: int | None = None) -> None:
    """Move a freshly exported graph to `target`, its weights into `target.name + '.data'` when the exporter
    wrote them to separate files or the graph is larger than `inline_limit` (default `INLINE_LIMIT`)."""
    limit = INLINE_LIMIT if inline_limit is None else inline_limit
    data_name = f"{target.name}.data"
    if data_files(exported):
        _gather(exported, target, data_name)
    elif exported.stat().st_size > limit:
        model = onnx.load(str(exported))
        onnx.save_model(
            model, str(target), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name
        )
    else:
        shutil.move(str(exported), str(target))


def _gather(exported: Path, target: Path, data_name: str) -> None:
    model = onnx.load(str(exported), load_external_data=False)
    with (target.parent / data_name).open("wb") as sink:
        for tensor in _tensors(model):
            if not uses_external_data(tensor):
                continue
            info = ExternalDataInfo(tensor)
            with (exported.parent / info.location).open("rb") as source:
                source.seek(info.offset or 0)
                data = source.read(info.length) if info.length else source.read()
            sink.write(b"\0" * (-sink.tell() % _ALIGN))
            offset = sink.tell()
            sink.write(data)
            del tensor.external_data[:]
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
    onnx.save_model(model, str(target))

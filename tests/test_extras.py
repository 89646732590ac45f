"""The `[tensorrt-rtx]` extra (with the base dependencies) brings every package `trt-embed build-engine` imports.

The command runs for real on a tiny artifact, with `python -X importtime` listing every module it imports;
each one's distribution must be required by the base dependencies, the extra, or what they require in turn
(read from the installed packages' metadata). The plan build may fail on a machine without a GPU: the imports
made up to then, and TensorRT-RTX's own, are what counts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def required_closure(requirements: list[str], extras: frozenset[str] = frozenset()) -> set[str]:
    """The distributions `requirements` bring, with what each installed one requires in turn."""
    found: set[str] = set()
    todo = [(Requirement(r), extras) for r in requirements]
    while todo:
        req, active = todo.pop()
        env = default_environment()
        if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in active | {""}):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found.add(name)
        try:
            more = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [(Requirement(r), frozenset(req.extras)) for r in more]
    return found


def imported_modules(code: str) -> set[str]:
    """The top-level modules `python -X importtime -c code` imports (stdlib left out)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|(.*)$", done.stderr, re.M)
    return {name.strip().split(".")[0] for name in names} - set(sys.stdlib_module_names)


@pytest.mark.skipif(
    not any(d.metadata["Name"].startswith("tensorrt_rtx") for d in metadata.distributions()),
    reason="TensorRT-RTX is not installed",
)
def test_the_tensorrt_rtx_extra_brings_what_build_engine_imports(
    tiny_artifact: Callable[[str], Path], tmp_path: Path
) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    command = "from trt_embed.cli import main; main(['build-engine', '-q', '--precision', 'fp16', '--target-sm', '86',"
    command += f" {str(artifact)!r}])"
    used = imported_modules(command) - imported_modules("pass")  # less what the interpreter's start-up imports
    assert {"onnx", "tensorrt_rtx_bindings"} <= used, used  # the whole path was walked: fp16 graph, then plans
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = required_closure([*project["dependencies"], *project["optional-dependencies"]["tensorrt-rtx"]])
    owners = metadata.packages_distributions()
    missing = {
        top: owners[top]
        for top in used - {"trt_embed"}
        if top in owners and not any(canonicalize_name(d) in allowed for d in owners[top])
    }
    assert not missing, f"build-engine imports {missing}, which pip install 'trt-embed[tensorrt-rtx]' does not bring"

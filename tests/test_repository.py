"""The repository is self-contained: a clone in an empty folder collects every test and runs the ones that read
data files without opening anything outside itself; the CI example's commands exist in our CLI."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from trt_embed.cli import build_parser, parse

ROOT = Path(__file__).resolve().parents[1]

# Read golden checkpoints, golden outputs and the corpus (tests/golden, benchmarks/data).
DATA_TESTS = [
    "tests/exporter/test_golden.py::test_artifact_matches_original_code[nomic_bert]",
    "tests/exporter/test_decoders.py::test_llama3_rope_matches_golden",
    "tests/test_repository.py::test_corpus_is_in_the_repository",
]

# Loaded into the clone's pytest: records every file opened in the original checkout or beside it (where a
# `shared/` folder sits) and fails the run if any was opened there.
AUDIT_PLUGIN = """
import os, sys
FORBIDDEN = [p for p in os.environ["TRT_EMBED_FORBIDDEN"].split(os.pathsep)]
opened = set()

def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if any(path == f or path.startswith(f + os.sep) for f in FORBIDDEN):
            opened.add(path)

sys.addaudithook(audit)

def pytest_sessionfinish(session, exitstatus):
    if opened:
        print("OPENED OUTSIDE THE CLONE:", *sorted(opened), sep="\\n")
        session.exitstatus = 3
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's HEAD cloned into an empty folder: no `shared/` or anything else beside it."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    target = tmp_path_factory.mktemp("empty") / "trt-embed"
    subprocess.run(["git", "clone", "--quiet", f"file://{ROOT}", str(target)], check=True)
    assert sorted(p.name for p in target.parent.iterdir()) == ["trt-embed"]
    return target


def forbidden_paths(clone: Path) -> list[str]:
    """The original checkout and everything beside it (where CI puts `shared/`), except a folder that holds the
    clone or this run's temporary files (the checkout itself may sit in the temp folder)."""
    root = ROOT.resolve()
    keep = [clone.resolve(), Path(tempfile.gettempdir()).resolve()]
    around = [p.resolve() for p in root.parent.iterdir() if p.resolve() != root]
    beside = [p for p in around if not any(k == p or p in k.parents for k in keep)]
    return [str(root), *(str(p) for p in beside)]


def run_pytest_in(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The clone's own code and tests only: PYTHONPATH is the clone, the cache and home are inside the temp dir.
    env = {
        **os.environ,
        "PYTHONPATH": str(clone),
        "TRT_EMBED_CACHE": str(clone.parent / "cache"),
        "TRT_EMBED_FORBIDDEN": os.pathsep.join(forbidden_paths(clone)),
    }
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "audit_plugin", *args]
    (clone.parent / "plugins").mkdir(exist_ok=True)
    (clone.parent / "plugins" / "audit_plugin.py").write_text(AUDIT_PLUGIN)
    env["PYTHONPATH"] += os.pathsep + str(clone.parent / "plugins")
    return subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=900)


def test_a_clone_collects_every_test(clone: Path) -> None:
    done = run_pytest_in(clone, "--collect-only", "-q")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = re.search(r"(\d+) tests? collected", done.stdout)
    assert collected and int(collected.group(1)) > 300, done.stdout[-500:]
    assert str(ROOT) not in done.stdout, "collection referenced the original checkout"


def test_a_clone_runs_the_data_tests_reading_only_itself(clone: Path) -> None:
    done = run_pytest_in(clone, "-q", *DATA_TESTS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(DATA_TESTS)} passed" in done.stdout


def test_no_source_names_a_path_outside_the_repository() -> None:
    """Static half of the check: no `parents[N]` that climbs out of the checkout, no `..`/`shared/` paths."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = [ROOT / f for f in tracked.split() if f.endswith(".py") or f.startswith("scripts/")]
    files.remove(Path(__file__).resolve())  # names the patterns it looks for
    assert files
    for file in files:
        text = file.read_text()
        depth = len(file.relative_to(ROOT).parts) - 1  # parents[depth] is the checkout's root
        for match in re.finditer(r"Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\](\.parent)?", text):
            assert int(match.group(1)) <= depth and not match.group(2), f"{file}: {match.group(0)} leaves the checkout"
        assert not re.search(r"""["'](\.\./|/work/)""", text), f"{file} names a path outside the checkout"
        assert '"shared"' not in text, f"{file} reads a shared/ folder"


def test_corpus_is_in_the_repository(corpus: list[str]) -> None:
    assert len(corpus) == 1965 and all(isinstance(t, str) and t for t in corpus)
    assert (ROOT / "benchmarks" / "data" / "README.md").is_file()
    assert (ROOT / "tests" / "golden" / "PROVENANCE.md").is_file()


def ci_commands() -> list[list[str]]:
    import yaml

    workflow: dict[Any, Any] = yaml.safe_load((ROOT / "examples" / "ci" / "export.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    found = []
    for step in steps:
        for line in str(step.get("run", "")).splitlines():
            if line.strip().startswith("trt-embed "):
                line = re.sub(r'"\$\{?\w+\}?"|\$\{?\w+\}?', "MODEL", line.split(">")[0])
                found.append(shlex.split(line)[1:])
    return found


def test_ci_example_exports_plans_without_a_gpu_and_publishes() -> None:
    import yaml

    text = (ROOT / "examples" / "ci" / "export.yml").read_text()
    workflow: dict[Any, Any] = yaml.safe_load(text)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest", "a CPU-only runner"
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses) and "gh release upload" in text
    assert "tensorrt-rtx" in text and "download.pytorch.org/whl/cpu" in text
    commands = ci_commands()
    assert [c[0] for c in commands] == ["export", "inspect", "inspect", "embed"]
    export = parse(build_parser(), commands[0])
    assert export.engine == "all" and export.tensorrt_flavour == "tensorrt-rtx"


def test_ci_example_commands_parse() -> None:
    for argv in ci_commands():
        parse(build_parser(), argv)  # exits 2 on an unknown subcommand or option

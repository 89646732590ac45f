"""Every example in README.md runs as written, on the model it needs.

Each ```python / ```bash block follows an HTML comment `<!-- test: KIND [ARTIFACT] -->` that says how it is checked:
  setup          the two set-up commands: `bash scripts/install && X`, X parsed by our CLI or a script that exists
  synopsis       usage lines: every `--option` exists in that subcommand's parser
  cli            run by bash in an empty folder, `trt-embed` being this checkout's CLI
  default        Python, with the default model's artifact in the cache
  serve-default  run against `trt-embed serve` (the README's command) on a free port instead of 8000
  serve-processes  the `trt-embed serve --processes N` command tests/server/test_serve_processes.py runs (port added)
  matryoshka-prompts NAME / lora NAME / clip NAME / vlm NAME   Python, in a folder where NAME is a tiny artifact
                 with what it needs
  sparse NAME    Python, in a folder where NAME is a tiny SPLADE (`splade`) or bge-m3-shaped (`m3`) artifact
  rerankers NAME NAME  Python, in a folder where the names are a tiny exported cross-encoder (1 label) and a tiny
                 3-label classifier
  layout         the package tree: every module it names exists where it says
The Install block is checked against pyproject.toml instead (its commands build and install).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from trt_embed import __version__
from trt_embed.cli import build_parser, parse

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"(?:<!-- test: (?P<tag>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


@dataclasses.dataclass
class Block:
    line: int
    kind: str
    argument: str
    language: str
    body: str


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        kind, _, argument = (match["tag"] or "").partition(" ")
        line = text.count("\n", 0, match.start("body"))
        blocks.append(Block(line, kind, argument, match["lang"], match["body"]))
    return blocks


def blocks_of(kind: str) -> list[Block]:
    found = [b for b in readme_blocks() if b.kind == kind]
    assert found, f"README.md has no block marked `<!-- test: {kind} -->`"
    return found


def test_every_example_is_checked() -> None:
    unchecked = [b.line for b in readme_blocks() if not b.kind and not is_install_block(b)]
    assert not unchecked, f"README.md code blocks at lines {unchecked} have no `<!-- test: ... -->` marker"


def test_layout_names_modules_that_exist() -> None:
    (block,) = blocks_of("layout")
    package, folder, named = ROOT / "trt_embed", ROOT / "trt_embed", 0
    for line in block.body.splitlines():
        head = re.match(r"\s{2}(\w+(?:/\w+)*)/", line)  # a folder, or a sub-package (runtime/text/)
        if head:
            folder = package / head[1]
            assert folder.is_dir(), f"README layout: {folder} does not exist"
        elif re.match(r"\s{2}\w+\.py", line):
            folder = package  # modules at the top of the package
        for name in re.findall(r"\b(\w+\.(?:py|yaml))\b", line.split("  ", 2)[-1] if head else line):
            assert (folder / name).is_file(), f"README layout names {folder.relative_to(ROOT)}/{name}, which is missing"
            named += 1
    assert named > 20


def is_install_block(block: Block) -> bool:
    return block.language == "bash" and block.body.startswith("pip install -e")


def commands(body: str) -> list[str]:
    """Shell commands of a block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_setup_is_two_commands_that_exist() -> None:
    (block,) = blocks_of("setup")
    lines = commands(block.body)
    assert len(lines) == 2, lines
    for line in lines:
        install, _, then = line.partition(" && ")
        assert install in ("bash scripts/install", "bash scripts/install serve"), install
        assert (ROOT / "scripts" / "install").is_file()
        if then.startswith("trt-embed "):
            parse(build_parser(), shlex.split(then)[1:])
        else:
            assert then == "bash scripts/test" and (ROOT / "scripts" / "test").is_file()


def test_install_table_matches_pyproject() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = README.read_text()
    table = text[text.index("| extra | adds | for |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `([\w-]+)` \| ([^|]+) \|", table, re.M)
    assert {name for name, _ in listed} == set(extras), "the README's extras table lists exactly the extras"
    for name, adds in listed:
        wanted = {re.split(r"[<>=;\[ ]", req)[0].lower() for req in extras[name]}
        named = {word.strip("` ").lower() for word in re.split(r",| \(", adds)}
        assert wanted <= named, f"extra {name}: README lists {sorted(named)}, pyproject has {sorted(wanted)}"
    assert f"trt_embed-{__version__}-py3-none-any.whl" in text, "the wheel's file name is the current version's"
    assert "pip install trt-embed\n" not in text and "`pip install trt-embed`" not in text, "not on PyPI"


def test_synopses_name_only_options_that_exist() -> None:
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for block in blocks_of("synopsis"):
        for line in re.sub(r"\n\s+\[", " [", block.body).splitlines():
            words = line.split()
            if len(words) < 2 or words[0] != "trt-embed":
                continue
            known = {o for a in (subcommands.get(words[1]) or parser)._actions for o in a.option_strings}
            for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line):
                assert option in known, f"README line {block.line}: {words[1]} has no option {option}"


@pytest.fixture
def cli_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose `trt-embed` and `python` are this checkout's CLI and this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "trt-embed"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trt_embed.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "python").symlink_to(sys.executable)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "TRT_EMBED_CACHE": str(tmp_path / "cache"),
    }


def run_bash(body: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"README example failed:\n{body}\n{done.stderr}"
    return done.stdout


def test_cli_examples(minilm_dir: Path, cli_path: dict[str, str], tmp_path: Path) -> None:
    (block,) = blocks_of("cli")
    work = tmp_path / "work"
    work.mkdir()
    out = run_bash(block.body, work, cli_path).splitlines()
    assert "384" in out, "inspect --json printed the embedding size"
    vectors = [line for line in out if line.startswith('{"text"')]
    assert len(vectors) == 3 and all(len(line.split(",")) == 384 + 1 for line in vectors)


def run_python(body: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(cwd)
    exec(compile(body, str(README), "exec"), {"__name__": "__main__"})


def test_python_api_on_the_default_model(minilm_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRT_EMBED_CACHE", str(minilm_cache))
    for block in blocks_of("default"):
        run_python(block.body, tmp_path, monkeypatch)


def test_python_api_on_a_matryoshka_model_with_prompts(
    tiny_bert_artifact: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prompts = {"prompts": {"search_query": "search_query: ", "search_document": "search_document: "}}
    artifact = tiny_bert_artifact({"matryoshka_dimensions": [16, 32, 64]}, prompts)
    for block in blocks_of("matryoshka-prompts"):
        (tmp_path / block.argument).symlink_to(artifact)
        run_python(block.body, tmp_path, monkeypatch)


def test_python_api_on_a_lora_model(
    tiny_model: Callable[[str], Path], lora_adapter: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from trt_embed.exporter import ExportOptions, export_model

    for block in blocks_of("lora"):
        options = ExportOptions(precision="fp32", fuse=False, lora={"legal": str(lora_adapter)})
        export_model(str(tiny_model("BertModel")), tmp_path / block.argument, options)
        run_python(block.body, tmp_path, monkeypatch)


def test_python_api_on_a_clip_model(
    tiny_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from trt_embed.exporter import ExportOptions, export_model

    for block in blocks_of("clip"):
        export_model(str(tiny_model("CLIPModel")), tmp_path / block.argument, ExportOptions(precision="fp32"))
        run_python(block.body, tmp_path, monkeypatch)


def test_python_api_on_a_vision_language_model(
    tiny_artifact: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for block in blocks_of("vlm"):
        (tmp_path / block.argument).symlink_to(tiny_artifact("Qwen2VLForConditionalGeneration"))
        run_python(block.body, tmp_path, monkeypatch)


SPARSE_ARTIFACTS = {"splade": "BertForMaskedLM", "m3": "BgeM3EmbeddingModel"}


def test_python_api_on_sparse_models(
    tiny_artifact: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for block in blocks_of("sparse"):
        for name in block.argument.split():
            if not (tmp_path / name).exists():
                (tmp_path / name).symlink_to(tiny_artifact(SPARSE_ARTIFACTS[name]))
        run_python(block.body, tmp_path, monkeypatch)


def test_python_api_on_rerankers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.exporter.test_cross_encoder import _save
    from trt_embed.exporter.export import export_model

    for block in blocks_of("rerankers"):
        for name, labels in zip(block.argument.split(), (1, 3), strict=True):
            if not (tmp_path / name).exists():
                export_model(str(_save("bert", labels, tmp_path / f"{name}-model")), tmp_path / name)
        run_python(block.body, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def default_server(minilm_cache: Path) -> Iterator[str]:
    """`trt-embed serve` as the README starts it, on a free port; yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TRT_EMBED_CACHE": str(minilm_cache), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "trt_embed.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://{address}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert process.poll() is None, "trt-embed serve exited"
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_examples_against_the_default_server(default_server: str, cli_path: dict[str, str], tmp_path: Path) -> None:
    for block in blocks_of("serve-default"):
        body = block.body.replace("127.0.0.1:8000", default_server)
        if block.language == "bash":
            out = run_bash(body, tmp_path, cli_path)
            data = json.loads(out)["data"]
            assert len(data) == 2 and all(len(row["embedding"]) == 384 for row in data)
        else:
            script = tmp_path / "example.py"
            script.write_text(body)
            done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert done.stdout.split() == ["384", "384"]

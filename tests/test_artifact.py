"""Artifact integrity: every file the runtime reads is hashed and checked, and every path stays inside."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trt_embed.artifact import Artifact
from trt_embed.errors import ArtifactError
from trt_embed.manifest import FORMAT_VERSION, sha256_file
from trt_embed.runtime import Runtime

TEXTS = ["the cat and the dog", "a dog in the city"]


@pytest.fixture
def artifact(tiny_artifact: Callable[[str], Path], tmp_path: Path) -> Iterator[Path]:
    """A private copy of the tiny BERT artifact, free to tamper with."""
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact("BertModel"), copy)
    yield copy


def _edit_manifest(artifact: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = artifact / "trt_embed.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set_engine_file(artifact: Path, file: str, sha256: str | None = None) -> None:
    def edit(data: dict[str, Any]) -> None:
        entry = next(e for e in data["engines"] if e["file"] == "model.onnx")
        entry["file"] = file
        if sha256 is not None:
            entry["sha256"] = sha256

    _edit_manifest(artifact, edit)


def test_the_manifest_hashes_every_tokenizer_file(artifact: Path) -> None:
    manifest = Artifact.open(artifact).manifest
    on_disk = {p.relative_to(artifact).as_posix() for p in (artifact / "tokenizer").rglob("*") if p.is_file()}
    assert "tokenizer/tokenizer.json" in on_disk
    assert set(manifest.files) == on_disk
    assert all(manifest.files[name] == sha256_file(artifact / name) for name in on_disk)
    assert manifest.format_version == FORMAT_VERSION


def test_a_swapped_vocabulary_entry_is_refused(artifact: Path) -> None:
    path = artifact / "tokenizer" / "tokenizer.json"
    with Runtime.load(artifact) as runtime:
        want = runtime.embed(TEXTS)
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["cat"], vocab["dog"] = vocab["dog"], vocab["cat"]
    path.write_text(json.dumps(tokenizer))
    with pytest.raises(ArtifactError, match=r"tokenizer/tokenizer\.json is corrupt or does not belong"):
        Runtime.load(artifact)
    # what the check prevents: the swapped tokenizer loads and silently changes the vectors
    with Runtime(Artifact.open(artifact, verify=False)) as runtime:
        assert not np.allclose(runtime.embed(TEXTS), want, atol=1e-3)


def test_an_unlisted_tokenizer_file_is_refused(artifact: Path) -> None:
    (artifact / "tokenizer" / "added_tokens.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"tokenizer/added_tokens\.json is in the artifact's tokenizer directory"):
        Runtime.load(artifact)


def test_a_tokenizer_without_a_hash_is_refused(artifact: Path) -> None:
    _edit_manifest(artifact, lambda data: data["files"].pop("tokenizer/tokenizer.json"))
    with pytest.raises(ArtifactError, match=r"tokenizer/tokenizer\.json has no sha256"):
        Runtime.load(artifact)


@pytest.mark.parametrize("digest", ["", None, "abc"])
def test_an_empty_engine_hash_is_refused(artifact: Path, digest: str | None) -> None:
    def edit(data: dict[str, Any]) -> None:
        next(e for e in data["engines"] if e["file"] == "model.onnx")["sha256"] = digest

    _edit_manifest(artifact, edit)
    with pytest.raises(ArtifactError, match=r"model\.onnx has no sha256 in the manifest"):
        Runtime.load(artifact)
    with Runtime.load(artifact, verify=False) as runtime:  # skipping the checks is the caller's explicit choice
        assert runtime.embed(TEXTS).shape[0] == len(TEXTS)


def test_an_empty_tokenizer_hash_is_refused(artifact: Path) -> None:
    _edit_manifest(artifact, lambda data: data["files"].update({"tokenizer/tokenizer.json": ""}))
    with pytest.raises(ArtifactError, match=r"tokenizer/tokenizer\.json has no sha256 in the manifest"):
        Runtime.load(artifact)


def test_a_path_through_dotdot_is_refused(artifact: Path) -> None:
    target = Path("/etc/passwd")
    _set_engine_file(
        artifact, "/".join([".."] * 4 + ["etc", "passwd"]), sha256_file(target) if target.is_file() else None
    )
    with pytest.raises(ArtifactError, match=r"'\.\./\.\./\.\./\.\./etc/passwd', which leaves the artifact directory"):
        Runtime.load(artifact)


def test_an_absolute_path_is_refused(artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"  # a valid graph with the right hash: only its place is wrong
    shutil.copyfile(artifact / "model.onnx", outside)
    _set_engine_file(artifact, str(outside))
    with pytest.raises(ArtifactError, match=rf"the absolute path '{outside}'"):
        Runtime.load(artifact)


def test_a_symlink_out_of_the_artifact_is_refused(artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    (artifact / "model.onnx").rename(outside)
    (artifact / "model.onnx").symlink_to(outside)
    with pytest.raises(ArtifactError, match=r"'model\.onnx' in the artifact is a symlink that leads out of it"):
        Runtime.load(artifact)


def test_a_tokenizer_directory_linked_out_is_refused(artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "tokenizer-elsewhere"
    (artifact / "tokenizer").rename(outside)
    (artifact / "tokenizer").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match=r"'tokenizer.*' in the artifact is a symlink that leads out of it"):
        Runtime.load(artifact)


def test_a_symlink_inside_the_artifact_is_allowed(artifact: Path) -> None:
    (artifact / "graphs").mkdir()
    (artifact / "model.onnx").rename(artifact / "graphs" / "model.onnx")
    (artifact / "model.onnx").symlink_to(Path("graphs") / "model.onnx")
    with Runtime.load(artifact) as runtime:
        assert runtime.embed(TEXTS).shape[0] == len(TEXTS)


def test_an_old_format_is_refused_with_the_fix(artifact: Path) -> None:
    _edit_manifest(artifact, lambda data: data.update({"format_version": 1}))
    with pytest.raises(ArtifactError, match=r"format version 1 is not supported .* re-export"):
        Runtime.load(artifact)

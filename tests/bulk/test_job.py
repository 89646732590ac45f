"""The bulk tool against `Runtime.embed` on the same texts: every input format, both output formats, the
output options, and a run killed with SIGKILL mid-way then resumed (row for row equal to an uninterrupted run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pcsv = pytest.importorskip("pyarrow.csv")

from trt_embed.bulk import BulkJob, Source, embed_file  # noqa: E402
from trt_embed.errors import InvalidRequest  # noqa: E402
from trt_embed.runtime import EmbedRequest, Runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tiny_artifact: Callable[[str], Path]) -> Path:
    return tiny_artifact("BertModel")


@pytest.fixture(scope="module")
def runtime(artifact: Path) -> Iterator[Runtime]:
    with Runtime.load(artifact, workers=2) as rt:
        yield rt


def texts_of(corpus: list[str], n: int) -> list[str]:
    """n texts of mixed lengths, some repeated with a suffix so that n can exceed the corpus."""
    return [f"{corpus[i % len(corpus)][: 40 + 7 * (i % 50)]} {i}" for i in range(n)]


def write_input(path: Path, ids: list[str], texts: list[str]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.table({"doc": ids, "body": texts}), path, row_group_size=37)
    elif path.suffix == ".csv":
        pcsv.write_csv(pa.table({"doc": ids, "body": texts}), path)
    elif path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps({"doc": i, "body": t, "extra": 1}) + "\n" for i, t in zip(ids, texts, strict=True))
        )
    else:
        path.write_text("".join(t + "\n" for t in texts))
    return path


def read_parquet(path: Path) -> tuple[list[object], np.ndarray]:
    table = pq.read_table(path)
    return table.column("id").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".txt"])
def test_every_input_format_equals_runtime_embed(
    runtime: Runtime, corpus: list[str], tmp_path: Path, suffix: str
) -> None:
    texts = texts_of(corpus, 150)
    ids = [f"d{i}" for i in range(len(texts))]
    source = write_input(tmp_path / f"in{suffix}", ids, texts)
    text_field = "text" if suffix == ".txt" else "body"
    id_field = None if suffix == ".txt" else "doc"
    out = tmp_path / "out.parquet"
    job = BulkJob(Source.of(source, text_field=text_field, id_field=id_field), out, chunk_rows=32)
    report = embed_file(runtime, job, progress=False)
    got_ids, got = read_parquet(out)
    assert report.rows == len(texts)
    assert got_ids == (list(range(len(texts))) if suffix == ".txt" else ids)
    np.testing.assert_allclose(got, runtime.embed(texts), atol=2e-5)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_npy_output_with_ids_and_binary_encoding(runtime: Runtime, corpus: list[str], tmp_path: Path) -> None:
    texts = texts_of(corpus, 70)
    source = write_input(tmp_path / "in.txt", [], texts)
    out = tmp_path / "vectors.npy"
    request = EmbedRequest(encodings=("ubinary",))
    embed_file(runtime, BulkJob(Source.of(source), out, request=request, chunk_rows=16), progress=False)
    reference = np.packbits(runtime.embed(texts) >= 0, axis=-1)  # sign bits, most significant first
    got = np.load(out)
    assert got.dtype == np.uint8
    assert (got != reference).sum() <= 2  # a value within float noise of 0 may flip
    np.testing.assert_array_equal(np.load(tmp_path / "vectors.ids.npy"), np.arange(len(texts)))


def test_output_options_reach_the_request(runtime: Runtime, corpus: list[str], tmp_path: Path) -> None:
    texts = texts_of(corpus, 40)
    source = write_input(tmp_path / "in.txt", [], texts)
    out = tmp_path / "out.parquet"
    request = EmbedRequest(prompt="query: ", normalize=False, encodings=("float", "binary"))
    embed_file(runtime, BulkJob(Source.of(source), out, request=request, chunk_rows=16), progress=False)
    table = pq.read_table(out)
    assert table.column_names == ["id", "embedding", "embedding_binary"]
    reference = runtime.embed(texts, prompt="query: ", normalize=False)
    assert not np.allclose(np.linalg.norm(reference, axis=1), 1.0)  # the option made a difference
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), reference, atol=1e-4)
    bits = np.stack(table.column("embedding_binary").to_numpy(zero_copy_only=False))
    expected = (np.packbits(reference >= 0, axis=-1).astype(np.int16) - 128).astype(np.int8)
    assert (bits != expected).sum() <= 2


def test_a_different_job_does_not_reuse_parts(runtime: Runtime, corpus: list[str], tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.txt", [], texts_of(corpus, 20))
    out = tmp_path / "out.parquet"
    embed_file(runtime, BulkJob(Source.of(source), out, chunk_rows=8, keep_parts=True), progress=False)
    with pytest.raises(InvalidRequest, match="chunk_rows"):
        embed_file(runtime, BulkJob(Source.of(source), out, chunk_rows=4), progress=False)
    embed_file(runtime, BulkJob(Source.of(source), out, chunk_rows=4, restart=True), progress=False)
    assert len(read_parquet(out)[0]) == 20


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        Source.of(tmp_path / "missing.jsonl")
    (tmp_path / "in.dat").write_text("x\n")
    with pytest.raises(InvalidRequest, match="--format"):
        Source.of(tmp_path / "in.dat")
    for source in (write_input(tmp_path / "in.jsonl", ["a"], ["x"]), write_input(tmp_path / "in.csv", ["a"], ["x"])):
        with pytest.raises(InvalidRequest, match="has no 'text'"):
            next(Source.of(source).chunks(10))


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "trt_embed.cli", "embed", *args]


def test_killed_run_resumes_to_the_uninterrupted_output(
    artifact: Path, runtime: Runtime, corpus: list[str], tmp_path: Path
) -> None:
    texts = texts_of(corpus, 6000)
    ids = [f"row-{i}" for i in range(len(texts))]
    source = write_input(tmp_path / "in.jsonl", ids, texts)
    common = ["--input", str(source), "--text-field", "body", "--id-field", "doc", "--chunk-rows", "64", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole = tmp_path / "whole.parquet"
    subprocess.run(cli(str(artifact), *common, "--output", str(whole)), env=env, check=True, timeout=300)

    out = tmp_path / "resumed.parquet"
    journal = tmp_path / "resumed.parquet.parts" / "journal.jsonl"
    process = subprocess.Popen(cli(str(artifact), *common, "--output", str(out)), env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(journal.read_text().splitlines())
    assert process.returncode == -signal.SIGKILL and not out.exists(), "the run finished before it was killed"
    assert 5 <= done < len(texts) // 64

    resumed = subprocess.run(
        cli(str(artifact), *common[:-1], "--output", str(out)), env=env, check=True, timeout=300, capture_output=True
    )
    assert "earlier run's parts" in resumed.stderr.decode()
    whole_ids, whole_vectors = read_parquet(whole)
    got_ids, got = read_parquet(out)
    assert got_ids == whole_ids == ids
    np.testing.assert_allclose(got, whole_vectors, atol=2e-5)
    np.testing.assert_allclose(got, runtime.embed(texts), atol=2e-5)


def test_matryoshka_dimensions_to_npy(
    tiny_bert_artifact: Callable[..., Path], corpus: list[str], tmp_path: Path
) -> None:
    artifact = tiny_bert_artifact({"matryoshka_dimensions": [64, 32, 16]})
    texts = texts_of(corpus, 30)
    source = write_input(tmp_path / "in.txt", [], texts)
    out = tmp_path / "v.npy"
    with Runtime.load(artifact) as rt:
        embed_file(rt, BulkJob(Source.of(source), out, request=EmbedRequest(dimensions=16)), progress=False)
        reference = rt.embed(texts, dimensions=16)
    got = np.load(out)
    assert got.shape == (30, 16)
    np.testing.assert_allclose(got, reference, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # re-normalized after the cut

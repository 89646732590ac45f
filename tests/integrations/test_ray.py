"""Ray on a real local cluster (head and worker processes on loopback): the bulk job as a Ray Data pipeline, a
resume of a local run's parts, the Embedder callable in a user's own pipeline, and the Ray Serve deployment,
each checked against `Runtime.embed`."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from trt_embed.bulk import BulkJob, Source, embed_file  # noqa: E402
from trt_embed.integrations.ray import Embedder, embed_file_on_ray, serve_app  # noqa: E402
from trt_embed.runtime import EmbedRequest, Runtime  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # for the workers
    ray.init(
        num_cpus=2,
        object_store_memory=150 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def artifact(tiny_artifact: Callable[[str], Path]) -> Path:
    return tiny_artifact("BertModel")


@pytest.fixture(scope="module")
def runtime(artifact: Path) -> Iterator[Runtime]:
    with Runtime.load(artifact) as rt:
        yield rt


def write_jsonl(path: Path, corpus: list[str], n: int) -> tuple[list[str], list[str]]:
    texts = [f"{corpus[i % len(corpus)][: 30 + 5 * (i % 40)]} {i}" for i in range(n)]
    ids = [f"doc-{i}" for i in range(n)]
    path.write_text("".join(json.dumps({"key": k, "body": t}) + "\n" for k, t in zip(ids, texts, strict=True)))
    return ids, texts


def read(path: Path) -> tuple[list[object], np.ndarray]:
    table = pq.read_table(path)
    return table.column("id").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def test_ray_data_job_equals_local_and_resumes(
    cluster: None, artifact: Path, runtime: Runtime, corpus: list[str], tmp_path: Path
) -> None:
    ids, texts = write_jsonl(tmp_path / "in.jsonl", corpus, 200)
    source = Source.of(tmp_path / "in.jsonl", text_field="body", id_field="key")
    out = tmp_path / "ray.parquet"
    report = embed_file_on_ray(artifact, BulkJob(source, out, chunk_rows=48), address=None, progress=False)
    assert report.rows == 200
    got_ids, got = read(out)
    assert got_ids == ids
    np.testing.assert_allclose(got, runtime.embed(texts), atol=2e-5)

    # A local run interrupted after two parts (the journal's later lines and parts gone), resumed on Ray.
    local = tmp_path / "resumed.parquet"
    embed_file(runtime, BulkJob(source, local, chunk_rows=48, keep_parts=True), progress=False)
    parts = tmp_path / "resumed.parquet.parts"
    journal = parts / "journal.jsonl"
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:2]))
    for index in range(2, 5):
        (parts / f"part-{index:08d}.parquet").unlink()
    local.unlink()
    report = embed_file_on_ray(artifact, BulkJob(source, local, chunk_rows=48), address=None, progress=False)
    assert (report.rows, report.embedded) == (200, 200 - 2 * 48)
    resumed_ids, resumed = read(local)
    assert resumed_ids == ids
    np.testing.assert_allclose(resumed, got, atol=2e-5)


def test_ray_job_with_row_numbers_prompt_and_text_input(
    cluster: None, artifact: Path, runtime: Runtime, corpus: list[str], tmp_path: Path
) -> None:
    texts = [corpus[i][:80] for i in range(50)]
    (tmp_path / "in.txt").write_text("".join(t.replace("\n", " ") + "\n" for t in texts))
    texts = [t.replace("\n", " ") for t in texts]
    request = EmbedRequest(prompt="query: ", encodings=("float", "int8"))
    out = tmp_path / "out.parquet"
    job = BulkJob(Source.of(tmp_path / "in.txt"), out, request=request, chunk_rows=16)
    embed_file_on_ray(artifact, job, address=None, progress=False)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == list(range(50))
    reference = runtime.run(EmbedRequest(inputs=texts, prompt="query: ", encodings=("float", "int8")))
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, reference.output.vectors, atol=2e-5)  # type: ignore[union-attr]
    int8 = np.stack(table.column("embedding_int8").to_numpy(zero_copy_only=False))
    assert np.abs(int8.astype(int) - np.stack(reference.encoded["int8"]).astype(int)).max() <= 1


def test_embedder_in_a_users_pipeline(cluster: None, artifact: Path, runtime: Runtime, corpus: list[str]) -> None:
    texts = corpus[:40]
    ds = ray.data.from_items([{"text": t, "n": i} for i, t in enumerate(texts)])
    ds = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"artifact": str(artifact)},
        compute=ray.data.ActorPoolStrategy(size=1),
        batch_size=16,
        num_cpus=1,
    )
    rows = sorted(ds.take_all(), key=lambda row: row["n"])
    np.testing.assert_allclose(np.stack([r["embedding"] for r in rows]), runtime.embed(texts), atol=2e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_deployment_answers_like_the_runtime(
    cluster: None, artifact: Path, runtime: Runtime, corpus: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trt-embed serve ARTIFACT --ray auto` builds the deployment; it is run here without blocking."""
    import httpx
    from ray import serve

    import trt_embed.integrations.ray as integration
    from trt_embed.cli import main

    started: dict[str, Any] = {}
    monkeypatch.setattr(integration, "serve_on_ray", lambda app, **where: started.update(app=app, **where))
    port = free_port()
    argv = ["serve", str(artifact), "--ray", "auto", "--served-model-name", "tiny", "--cpus-per-replica", "0.5"]
    assert main([*argv, "--port", str(port), "--replicas", "1"]) == 0
    assert (started["address"], started["port"]) == ("auto", port)
    deadline = time.monotonic() + 60  # Ray Data's actors of the tests before release their CPUs asynchronously
    while ray.available_resources().get("CPU", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(started["app"], name="trt-embed", route_prefix="/", blocking=False)
    texts = corpus[:5]
    response = httpx.post(  # cut at the model's limit, as Runtime.embed does (the server refuses by default)
        f"http://127.0.0.1:{port}/v1/embeddings",
        json={"model": "tiny", "input": texts, "truncate_prompt_tokens": -1},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    got = np.array([item["embedding"] for item in response.json()["data"]])
    np.testing.assert_allclose(got, runtime.embed(texts), atol=2e-5)
    bad = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"model": "nope", "input": "x"}, timeout=60)
    assert bad.status_code == 404 and "nope" in bad.text
    serve.delete("trt-embed")


def test_serve_app_refuses_what_is_not_an_artifact(tmp_path: Path) -> None:
    from trt_embed.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="prebuilt"):
        serve_app([str(tmp_path)])


def test_ray_job_equals_local_with_a_default_prompt_left_out_of_pooling(
    cluster: None, tiny_artifact: Callable[[str], Path], corpus: list[str], tmp_path: Path
) -> None:
    """A GritLM-style artifact: the model's default prompt ("document") is tokenized before each text and left out
    of pooling. `trt-embed embed --ray` tokenizes on CPU actors ahead of the engine: its vectors must equal the local
    `trt-embed embed`'s (both through the command line, the same files)."""
    from trt_embed.cli import main

    artifact = tiny_artifact("GritLM")
    with Runtime.load(artifact) as runtime:
        manifest = runtime.manifest
        assert manifest.default_prompt_name and not manifest.pooling.include_prompt, "the case under test"
    ids, _ = write_jsonl(tmp_path / "in.jsonl", corpus, 40)
    common = [str(artifact), "--input", str(tmp_path / "in.jsonl"), "--text-field", "body", "--id-field", "key"]
    common += ["--chunk-rows", "16", "--quiet"]
    assert main(["embed", *common, "--output", str(tmp_path / "local.parquet")]) == 0
    assert main(["embed", *common, "--output", str(tmp_path / "ray.parquet"), "--ray", "local"]) == 0
    local_ids, local = read(tmp_path / "local.parquet")
    ray_ids, got = read(tmp_path / "ray.parquet")
    assert ray_ids == local_ids == ids
    # The same token ids and pooling mask; batches of other lengths round differently in the last bit (6e-8 seen;
    # with the prompt tokenized apart from pooling's skip, vectors were 0.27 off).
    np.testing.assert_allclose(got, local, rtol=0, atol=1e-6)

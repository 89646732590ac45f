"""Ray: the bulk job as a Ray Data pipeline, callable classes for your own `map_batches`, and the HTTP app as a
Ray Serve deployment. Needs `pip install 'trt-embed[ray]'`.

Your own pipeline (one `Runtime` per actor; GPUs: `num_gpus=1` per actor)::

    ds = ray.data.read_parquet("corpus/")
    ds = ds.map_batches(Embedder, fn_constructor_kwargs={"artifact": "/shared/artifact"}, batch_size=1024,
                        compute=ray.data.ActorPoolStrategy(size=4), batch_format="pyarrow")

The bulk job (`trt-embed embed ARTIFACT --input PATH --output PATH --ray ADDRESS`) reads with Ray's readers in
file order, tokenizes on CPU actors, embeds on an actor pool of runtimes, and hands the rows back in order to the
driver, which writes them as the same journaled Parquet parts as the local tool: the output equals a local run's
and an interrupted job resumes after its last finished part.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

from trt_embed.bulk.job import BulkJob, BulkReport, check_job, finish_job
from trt_embed.bulk.parts import WorkDir, column_name
from trt_embed.bulk.progress import Progress
from trt_embed.errors import InvalidRequest, MissingDependency
from trt_embed.runtime import EmbedRequest, RequestTokenizer, Runtime, RuntimeOptions


def require_ray() -> ModuleType:
    """`ray`, or a MissingDependency that prints the pip line."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependency("ray", "ray") from None
    return ray


class Tokenize:
    """CPU stage: adds `input_ids` to batches that have a text column, tokenized as the runtime tokenizes the
    request (its prompt or the model's default one, its truncation); keeps only the columns in `keep` (all when
    None) besides."""

    def __init__(
        self,
        artifact: str,
        *,
        text_column: str = "text",
        request: EmbedRequest | None = None,
        keep: list[str] | None = None,
    ) -> None:
        self.tokenizer = RequestTokenizer(artifact)
        self.text_column = text_column
        self.request = request or EmbedRequest()
        self.keep = keep

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.text_column).to_pylist()
        if self.keep is not None:
            batch = batch.select(self.keep)
        ids = pa.array(self.tokenizer.token_ids(texts, self.request), pa.list_(pa.int32()))
        return batch.append_column("input_ids", ids)


class Embedder:
    """A `map_batches` callable holding one `Runtime`: embeds the text column (or the `input_ids` a `Tokenize`
    stage added) with `request`'s options, and appends one column per encoding (`embedding`, `embedding_int8`,
    ...), and `num_tokens` when it got `input_ids`. Other columns pass through; `input_ids` is dropped."""

    def __init__(
        self,
        artifact: str,
        *,
        text_column: str = "text",
        request: EmbedRequest | None = None,
        options: RuntimeOptions | None = None,
    ) -> None:
        self.runtime = Runtime.load(artifact, options)
        self.text_column = text_column
        self.request = request or EmbedRequest()

    def __call__(self, batch: pa.Table | Mapping[str, Any]) -> dict[str, Any]:
        columns = _columns(batch)
        if "input_ids" in columns:
            inputs: list[Any] = [list(map(int, row)) for row in columns.pop("input_ids")]
            request = dataclasses.replace(self.request, inputs=inputs, truncate="end", truncate_prompt_tokens=None)
            columns["num_tokens"] = np.asarray([len(row) for row in inputs], dtype=np.int64)
        else:
            inputs = [str(t) for t in columns[self.text_column]]
            request = dataclasses.replace(self.request, inputs=inputs)
        result = self.runtime.run(request)
        for encoding in dict.fromkeys(self.request.encodings):
            rows = result.encoded[encoding]
            columns[column_name(encoding)] = np.array(rows, dtype=object) if encoding == "base64" else np.stack(rows)
        return columns

    def __del__(self) -> None:
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.close()


def _columns(batch: pa.Table | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(batch, pa.Table):
        return {name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.column_names}
    return dict(batch)


def connect(address: str | None) -> ModuleType:
    """Join the cluster at `address` (`auto`: the one this machine belongs to; `local`: start one here)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, log_to_driver=False)
    return ray


def read_dataset(job: BulkJob, cpus: float = 0.5) -> Any:
    """The input as a Ray dataset, in file order (columns are picked by the next stage: a separate projection
    would take a CPU of its own)."""
    ray = require_ray()
    source = job.source
    path = str(source.path)
    if source.format == "parquet":
        ds = ray.data.read_parquet(path, num_cpus=cpus)
    elif source.format == "csv":
        ds = ray.data.read_csv(path, num_cpus=cpus)
    elif source.format == "jsonl":
        ds = ray.data.read_json(path, num_cpus=cpus)  # pyarrow's reader: one object per line
    else:
        ds = ray.data.read_text(path, drop_empty_lines=False, num_cpus=cpus)
    return ds


def embed_file_on_ray(
    artifact: str | Path | None,
    job: BulkJob,
    *,
    address: str | None = "auto",
    options: RuntimeOptions | None = None,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float | None = None,
    tokenizers: int = 1,
    progress: bool = True,
) -> BulkReport:
    """Run (or resume) `job` as a Ray Data pipeline; the output equals `embed_file`'s. `actors` runtimes embed;
    by default one per GPU of the cluster, or, without GPUs, one per CPU but one (a single-threaded engine each,
    unless `options` say otherwise). `tokenizers` CPU actors (half a CPU each) tokenize; reading tasks take half a
    CPU each, so that the pipeline fits a 2-CPU machine."""
    from trt_embed.defaults import artifact_for

    require_ray()
    check_job(job)
    directory = artifact_for(None if artifact is None else str(artifact))
    started = time.perf_counter()
    work = WorkDir(job.output, job.describe(directory), restart=job.restart)
    done = sorted(work.done)
    skip_parts = len(done)
    if done != list(range(skip_parts)):
        raise InvalidRequest(f"{work.path} has parts out of order; pass --restart", "restart")
    first = next(job.source.chunks(1), None)  # checks the columns, with the local reader's clear errors
    implicit = first is not None and job.source.format != "text" and _has_column(job, "id")
    id_name = job.source.id_field or ("id" if implicit else None)
    total = job.source.count_rows()
    meter = Progress(total, done=sum(work.done.values()), every=None if progress else float("inf"))
    parts = skip_parts
    if first is not None and skip_parts * job.chunk_rows < total:
        ray = connect(address)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        actors, gpus_per_actor, options = _actor_pool(ray, actors, gpus_per_actor, options)
        ds = read_dataset(job)
        if skip_parts:
            ds = ds.split_at_indices([skip_parts * job.chunk_rows])[1]
        request = dataclasses.replace(job.request, inputs=None)
        ds = ds.map_batches(
            Tokenize,
            fn_constructor_kwargs={
                "artifact": str(directory),
                "request": request,
                "text_column": job.source.text_field,
                "keep": [id_name] if id_name else [],
            },
            compute=ray.data.ActorPoolStrategy(size=tokenizers),
            num_cpus=0.5,
            batch_format="pyarrow",
            batch_size=min(job.chunk_rows, 1024),
        )
        ds = ds.map_batches(
            Embedder,
            fn_constructor_kwargs={
                "artifact": str(directory),
                "request": request,
                "options": options,
                "text_column": job.source.text_field,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor,
            batch_format="pyarrow",
            batch_size=job.chunk_rows,
        )
        for index, batch in enumerate(ds.iter_batches(batch_size=job.chunk_rows, batch_format="numpy"), skip_parts):
            rows = len(batch[column_name(request.encodings[0])])
            start = index * job.chunk_rows
            ids = batch[id_name] if id_name else np.arange(start, start + rows, dtype=np.int64)
            columns = {"id": pa.array(ids)}
            for encoding in dict.fromkeys(request.encodings):
                columns[column_name(encoding)] = _vector_array(batch[column_name(encoding)])
            work.write(index, pa.table(columns))
            meter.advance(rows, int(batch["num_tokens"].sum()) if "num_tokens" in batch else 0)
            parts = index + 1
    return finish_job(job, work, parts, meter, started, progress=progress, how=" with Ray")


def _actor_pool(
    ray: ModuleType, actors: int | None, gpus: float | None, options: RuntimeOptions | None
) -> tuple[int, float, RuntimeOptions]:
    """Runtime actors, GPUs each, and their options: one per GPU, else one single-threaded runtime per CPU slot."""
    resources = ray.cluster_resources()
    cluster_gpus = int(resources.get("GPU", 0))
    if gpus is None:
        gpus = 1.0 if cluster_gpus else 0.0
    if actors is None:
        actors = cluster_gpus if gpus and cluster_gpus else max(1, int(resources.get("CPU", 2)) - 1)
    options = dataclasses.replace(options or RuntimeOptions(), devices=None)  # Ray gives each actor its GPU
    if not gpus and options.workers is None:
        options = dataclasses.replace(options, workers=1, threads=1, latency_engine=False)
    return actors, gpus, options


def _has_column(job: BulkJob, name: str) -> bool:
    """Whether the input has column `name` (read from the first rows)."""
    source = dataclasses.replace(job.source, id_field=name)
    try:
        next(source.chunks(1))
    except InvalidRequest:
        return False
    return True


def _vector_array(values: np.ndarray[Any, Any]) -> pa.Array:
    if values.dtype == object:
        return pa.array(list(values), pa.string())
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


# -- Ray Serve ----------------------------------------------------------------------------------------------


def serve_app(
    artifacts: list[str],
    *,
    names: list[str] | None = None,
    options: RuntimeOptions | None = None,
    settings: Any = None,
    num_replicas: int | str | None = None,
    autoscaling_config: Mapping[str, Any] | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
) -> Any:
    """A Ray Serve application serving the HTTP app (OpenAI, Cohere, pooling, score routes) for prebuilt
    `artifacts` (paths every node can read); each replica loads them. Run it with `serve.run(app)`."""
    require_ray()
    from ray import serve

    paths = [str(Path(a).resolve()) for a in artifacts]
    missing = [p for p in paths if not (Path(p) / "trt_embed.json").is_file()]
    if missing:
        raise InvalidRequest(
            f"{missing[0]} is not a trt-embed artifact; Ray Serve replicas load prebuilt artifacts (run "
            "`trt-embed export` first, to a path every node can read)",
            "model",
        )
    served = names or [Path(p).name for p in paths]
    runtime_options = options or RuntimeOptions()

    def build() -> Any:
        from trt_embed.server.app import create_app
        from trt_embed.server.main import load_registry

        return create_app(lambda: load_registry(served, [Path(p) for p in paths], runtime_options), settings)

    deployment_options: dict[str, Any] = {"name": "trt-embed"}
    if autoscaling_config is not None:
        deployment_options["autoscaling_config"] = dict(autoscaling_config)
    elif num_replicas is not None:
        deployment_options["num_replicas"] = num_replicas
    if ray_actor_options is not None:
        deployment_options["ray_actor_options"] = dict(ray_actor_options)
    server = serve.ingress(build)(type("TrtEmbedServer", (), {}))
    deployment: Any = serve.deployment(server, **deployment_options)
    return deployment.bind()


def serve_on_ray(app: Any, *, address: str | None, host: str, port: int, blocking: bool = True) -> None:
    """Start Ray Serve's HTTP proxy on host:port and run `app` (blocks until interrupted when `blocking`)."""
    ray = connect(address)
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name="trt-embed", route_prefix="/", blocking=blocking)
    del ray

"""The local bulk job: stream chunks of the input through a `Runtime`, a few chunks in flight at once, write
each as a part in input order, then merge the parts into the output.

Memory stays bounded by `chunk_rows * (in_flight + 1)` rows; the runtime's scheduler batches across the chunks in
flight, so its workers stay busy while the next chunk is read and tokenized.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from trt_embed.bulk.parts import WorkDir, column_name, output_format, vector_column
from trt_embed.bulk.progress import Progress
from trt_embed.bulk.sources import Source
from trt_embed.errors import InvalidRequest
from trt_embed.manifest import MANIFEST_NAME
from trt_embed.runtime import EmbedRequest, EmbedResult, Runtime

# One chunk's request: the template request with the chunk's texts.
RunChunk = Callable[[EmbedRequest], EmbedResult]


@dataclasses.dataclass(frozen=True)
class BulkJob:
    """What to embed and how. `request` carries every output option of `embed` (dimensions, normalize,
    encodings, prompts, truncation, variant); its inputs are filled in chunk by chunk."""

    source: Source
    output: Path
    request: EmbedRequest = dataclasses.field(default_factory=EmbedRequest)
    chunk_rows: int = 4096
    in_flight: int = 3
    restart: bool = False
    keep_parts: bool = False

    def describe(self, artifact: Path) -> dict[str, Any]:
        """The job's identity, kept in the work directory: a resumed run must agree with it on every key."""
        stat = self.source.path.stat()
        manifest = hashlib.sha256((artifact / MANIFEST_NAME).read_bytes()).hexdigest()
        request = dataclasses.asdict(dataclasses.replace(self.request, inputs=None, priority=0))
        return {
            "input": str(self.source.path.resolve()),
            "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "format": self.source.format,
            "text_field": self.source.text_field,
            "id_field": self.source.id_field,
            "chunk_rows": self.chunk_rows,
            "artifact_manifest_sha256": manifest,
            "request": {k: list(v) if isinstance(v, tuple) else v for k, v in request.items()},
        }


@dataclasses.dataclass
class BulkReport:
    rows: int  # in the output
    embedded: int  # by this run (the rest came from parts of an interrupted run)
    tokens: int
    seconds: float

    def describe(self) -> str:
        rate = self.embedded / self.seconds if self.seconds else 0.0
        resumed = self.rows - self.embedded
        again = f" ({resumed:,} from an earlier run's parts)" if resumed else ""
        return (
            f"{self.rows:,} rows{again}; this run: {self.embedded:,} rows, {self.tokens:,} tokens at {rate:,.0f} rows/s"
        )


def check_job(job: BulkJob) -> None:
    """Refuse before any work what the output cannot hold."""
    if job.request.task != "embed":
        raise InvalidRequest("the bulk tool writes one vector per row (task embed)", "task")
    if output_format(job.output) == "npy" and len(job.request.encodings) != 1:
        raise InvalidRequest("NumPy output holds one encoding; pass one --encoding or write .parquet", "encoding")
    if output_format(job.output) == "npy" and job.request.encodings[0] == "base64":
        raise InvalidRequest("NumPy output holds numbers; base64 needs .parquet output", "encoding")
    if job.chunk_rows < 1 or job.in_flight < 1:
        raise InvalidRequest("chunk_rows and in_flight must be at least 1", "chunk_rows")


def part_table(ids: pa.Array, result: EmbedResult, encodings: tuple[str, ...]) -> pa.Table:
    """A chunk's output: its ids, then one column per encoding."""
    columns: dict[str, pa.Array] = {"id": ids}
    for encoding in dict.fromkeys(encodings):
        columns[column_name(encoding)] = vector_column(result.encoded[encoding])  # type: ignore[index]
    return pa.table(columns)


def run_job(
    job: BulkJob, run: RunChunk, artifact: Path, *, progress: bool = True, stream: TextIO | None = None
) -> BulkReport:
    """Run (or resume) `job`, calling `run` once per unfinished chunk, and merge the output."""
    check_job(job)
    started = time.perf_counter()
    work = WorkDir(job.output, job.describe(artifact), restart=job.restart)
    total = job.source.count_rows()
    meter = Progress(total, done=sum(work.done.values()), stream=stream, every=None if progress else float("inf"))
    queue: collections.deque[tuple[int, pa.Array, Future[EmbedResult]]] = collections.deque()
    parts = 0
    with ThreadPoolExecutor(job.in_flight, thread_name_prefix="trt-embed-bulk") as pool:

        def finish_oldest() -> None:
            index, ids, future = queue.popleft()
            result = future.result()
            work.write(index, part_table(ids, result, job.request.encodings))
            meter.advance(len(ids), result.num_tokens)

        try:
            for index, chunk in enumerate(job.source.chunks(job.chunk_rows)):
                parts = index + 1
                if index in work.done:
                    continue
                texts = chunk.column("text").to_pylist()
                request = dataclasses.replace(job.request, inputs=texts)
                queue.append((index, chunk.column("id").combine_chunks(), pool.submit(run, request)))
                if len(queue) >= job.in_flight:
                    finish_oldest()
            while queue:
                finish_oldest()
        finally:
            for _, _, future in queue:
                future.cancel()
    return finish_job(job, work, parts, meter, started, progress=progress)


def finish_job(
    job: BulkJob, work: WorkDir, parts: int, meter: Progress, started: float, *, progress: bool, how: str = ""
) -> BulkReport:
    """Merge the job's parts into its output (dropping them unless kept) and report; `how` names the runner."""
    rows = work.merge(job.output, parts)
    if not job.keep_parts:
        work.remove()
    report = BulkReport(rows, meter.rows, meter.tokens, time.perf_counter() - started)
    if progress:
        meter.finish(f"wrote {job.output}{how}: {report.describe()}")
    return report


def embed_file(runtime: Runtime, job: BulkJob, *, progress: bool = True, stream: TextIO | None = None) -> BulkReport:
    """Run `job` on a local runtime (all its devices and workers)."""
    return run_job(job, runtime.run, runtime.artifact.directory, progress=progress, stream=stream)

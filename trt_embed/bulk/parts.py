"""Resumable output: one Parquet part per input chunk, written atomically, and a journal of finished parts.

The work directory (`OUTPUT.parts/`) holds `job.json` (what the job is: input, options, artifact; a resumed run
must match it), `journal.jsonl` (one line per finished part, appended and fsynced after the part's rename) and
`part-NNNNNNNN.parquet`. A part is done only when the journal says so: a crash between rename and journal line
just redoes that part. The final merge reads the parts in order into the output, again through a rename.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trt_embed.errors import InvalidRequest

OUTPUT_FORMATS = ("parquet", "npy")


def output_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise InvalidRequest(f"the output must end in .parquet or .npy, got {path.name!r}", "output")
    return suffix


def vector_column(rows: list[Any]) -> pa.Array:
    """Per-input items of one encoding as a column: fixed-size lists of numbers, or strings (base64)."""
    if rows and isinstance(rows[0], str):
        return pa.array(rows, pa.string())
    matrix = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    flat = pa.array(matrix.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def column_name(encoding: str) -> str:
    return "embedding" if encoding == "float" else f"embedding_{encoding}"


class WorkDir:
    """The parts and journal of one bulk job."""

    def __init__(self, output: Path, job: Mapping[str, Any], *, restart: bool = False) -> None:
        self.path = output.with_name(output.name + ".parts")
        self.job = dict(job)
        if restart and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        spec = self.path / "job.json"
        if spec.exists():
            before = json.loads(spec.read_text())
            changed = sorted(k for k in {**before, **self.job} if before.get(k) != self.job.get(k))
            if changed:
                raise InvalidRequest(
                    f"{self.path} holds parts of a different job ({', '.join(changed)} changed); pass --restart "
                    "to start over, or run the same job again to resume it",
                    "restart",
                )
        else:
            _atomic_write(spec, json.dumps(self.job, indent=2, sort_keys=True).encode())
        self.done = self._read_journal()

    def _read_journal(self) -> dict[int, int]:
        """Finished parts (index -> rows) whose file is present; a torn last line (crash mid-append) is ignored."""
        journal = self.path / "journal.jsonl"
        done: dict[int, int] = {}
        if journal.exists():
            for line in journal.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if self.part(record["part"]).exists():
                    done[int(record["part"])] = int(record["rows"])
        return done

    def part(self, index: int) -> Path:
        return self.path / f"part-{index:08d}.parquet"

    def write(self, index: int, table: pa.Table) -> None:
        """Write part `index` (tmp file, fsync, rename), then journal it."""
        final = self.part(index)
        tmp = final.with_suffix(".tmp")
        pq.write_table(table, tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        with (self.path / "journal.jsonl").open("a") as journal:
            journal.write(json.dumps({"part": index, "rows": table.num_rows}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        self.done[index] = table.num_rows

    def merge(self, output: Path, parts: int) -> int:
        """Concatenate parts 0..parts-1 in order into `output` (Parquet, or .npy plus .ids.npy); returns rows."""
        missing = [i for i in range(parts) if i not in self.done]
        if missing:
            raise RuntimeError(f"parts {missing[:5]} are not finished; cannot merge")
        tmp = output.with_name(output.name + ".tmp")
        if output_format(output) == "parquet":
            rows = _merge_parquet([self.part(i) for i in range(parts)], tmp)
            os.replace(tmp, output)
        else:
            rows = _merge_npy([self.part(i) for i in range(parts)], tmp, output)
        return rows

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _merge_parquet(paths: list[Path], tmp: Path) -> int:
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for path in paths:
            table = pq.read_table(path)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # an empty input: an empty file with the id column only
        pq.write_table(pa.table({"id": pa.array([], pa.int64())}), tmp)
    return rows


def _merge_npy(paths: list[Path], tmp: Path, output: Path) -> int:
    """The one vector column as [N, D] in `output`; the ids as `output` with suffix `.ids.npy`."""
    schemas = [pq.read_schema(p) for p in paths]
    counts = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    rows = int(sum(counts))
    vector = next((n for n in (schemas[0].names if schemas else []) if n != "id"), None)
    if vector is None:  # an empty input
        _save_npy(output, np.zeros((0, 0), np.float32))
        _save_npy(output.with_name(output.stem + ".ids.npy"), np.zeros(0, np.int64))
        return 0
    kind = schemas[0].field(vector).type
    if not pa.types.is_fixed_size_list(kind):
        raise InvalidRequest("NumPy output takes a float, int8, uint8, binary or ubinary encoding", "output")
    dtype = kind.value_type.to_pandas_dtype()
    matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, kind.list_size))
    id_values: list[Any] = []
    at = 0
    for path in paths:
        table = pq.read_table(path)
        column = table.column(vector).combine_chunks()
        n = table.num_rows
        matrix[at : at + n] = column.values.to_numpy(zero_copy_only=False).reshape(n, kind.list_size)
        id_values.extend(table.column("id").to_pylist())
        at += n
    matrix.flush()
    del matrix
    _save_npy(output.with_name(output.stem + ".ids.npy"), np.asarray(id_values))
    os.replace(tmp, output)
    return rows


def _save_npy(path: Path, array: np.ndarray[Any, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

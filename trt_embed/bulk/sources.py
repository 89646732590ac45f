"""Input files as a stream of fixed-size chunks of (id, text) rows, read with pyarrow in bounded memory.

JSONL (one object per line), Parquet, CSV (with a header) and plain text (one text per line). Chunk `k` always
holds rows `[k * rows, (k + 1) * rows)` of the file, so a resumed run finds the same rows in the same chunks.
Without an id column the id is the row's number (0-based; for plain text, the line's number).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa

from trt_embed.errors import InvalidRequest

Format = Literal["jsonl", "parquet", "csv", "text"]
FORMATS: tuple[Format, ...] = ("jsonl", "parquet", "csv", "text")
SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".text": "text",
}
BLOCK_BYTES = 1 << 20  # pyarrow's JSON/CSV read block: bounds memory, not results


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the rows come from. `id_field` None: the "id" column when there is one, else row numbers."""

    path: Path
    format: Format
    text_field: str = "text"
    id_field: str | None = None

    @classmethod
    def of(
        cls, path: str | Path, format: str | None = None, text_field: str = "text", id_field: str | None = None
    ) -> Source:
        path = Path(path)
        if not path.is_file():
            raise InvalidRequest(f"input file {str(path)!r} does not exist", "input")
        chosen = format or SUFFIXES.get(path.suffix.lower())
        if chosen not in FORMATS:
            raise InvalidRequest(
                f"cannot tell the format of {path.name!r} from its suffix; pass --format {'|'.join(FORMATS)}",
                "format",
            )
        return cls(path, chosen, text_field, id_field)

    def count_rows(self) -> int:
        """Rows in the file: exact for Parquet; lines for the others (a CSV's quoted newlines count extra)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(self.path).metadata.num_rows)
        lines, last = 0, b"\n"
        with self.path.open("rb") as f:
            while block := f.read(BLOCK_BYTES):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(0, lines - (self.format == "csv"))

    def chunks(self, rows: int) -> Iterator[pa.Table]:
        """Tables of exactly `rows` rows (the last one fewer) with columns `id` and `text` (string, no nulls)."""
        start = 0
        for table in _rechunk(self._batches(rows), rows):
            yield self._normalize(table, start)
            start += table.num_rows

    def _batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        if self.format == "text":
            yield from _text_batches(self.path, rows)
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            yield from pq.ParquetFile(self.path).iter_batches(batch_size=rows)
        elif self.format == "csv":
            import pyarrow.csv as pcsv

            yield from pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
                convert_options=pcsv.ConvertOptions(column_types={self.text_field: pa.string()}),
            )
        else:
            import pyarrow.json as pjson

            schema = pa.schema([(self.text_field, pa.string())])
            yield from pjson.open_json(
                self.path,
                read_options=pjson.ReadOptions(block_size=BLOCK_BYTES),
                parse_options=pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
            )

    def _normalize(self, table: pa.Table, start: int) -> pa.Table:
        names = table.column_names
        if self.text_field not in names:
            raise InvalidRequest(
                f"{self.path.name} has no {self.text_field!r} column; it has {', '.join(names)}; pick: --text-field",
                "text_field",
            )
        text = table.column(self.text_field).cast(pa.string())
        if text.null_count:
            first = text.to_pylist().index(None)
            raise InvalidRequest(
                f"row {start + first} of {self.path.name} has no {self.text_field!r} (pick: --text-field)",
                "text_field",
            )
        if self.id_field is not None and self.id_field not in names:
            raise InvalidRequest(
                f"{self.path.name} has no id column {self.id_field!r}; it has {', '.join(names)}", "id_field"
            )
        id_name = self.id_field or ("id" if "id" in names and self.format != "text" else None)
        ids = table.column(id_name) if id_name else pa.array(range(start, start + table.num_rows), pa.int64())
        return pa.table({"id": ids, "text": text})


def _text_batches(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    lines: list[str] = []
    with path.open(encoding="utf-8", newline="") as f:
        for line in f:
            lines.append(line.rstrip("\r\n"))
            if len(lines) == rows:
                yield pa.record_batch({"text": pa.array(lines, pa.string())})
                lines = []
    if lines:
        yield pa.record_batch({"text": pa.array(lines, pa.string())})


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup record batches of any size into tables of exactly `rows` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)

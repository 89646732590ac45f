"""Bulk embedding of files: `trt-embed embed ARTIFACT --input PATH --output PATH` and its Python API.

Needs pyarrow (`pip install 'trt-embed[bulk]'`). Locally it streams the input through a `Runtime`; with Ray
(`trt_embed.integrations.ray`) the same job runs as a Ray Data pipeline.
"""

from trt_embed.bulk.job import BulkJob, BulkReport, embed_file, run_job
from trt_embed.bulk.sources import FORMATS, Source

__all__ = ["FORMATS", "BulkJob", "BulkReport", "Source", "embed_file", "run_job"]

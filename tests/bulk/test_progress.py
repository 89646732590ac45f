"""The progress line: rows done of the total, this run's rates and the time left."""

from __future__ import annotations

import io
import re

from trt_embed.bulk.progress import Progress, clock


def test_progress_line_counts_resumed_rows_but_rates_only_this_run() -> None:
    stream = io.StringIO()
    progress = Progress(400, done=100, stream=stream, every=0.0)
    progress.started -= 2.0  # as if this run had been going for two seconds
    progress.advance(100, 1500)
    line = stream.getvalue()
    assert "200/400 rows (50.0%)" in line
    rows, tokens = (float(x.replace(",", "")) for x in re.findall(r"([\d,]+) (?:rows|tokens)/s", line))
    assert 45 <= rows <= 50 and 700 <= tokens <= 750  # 100 rows and 1,500 tokens in about 2 s
    assert re.search(r"ETA 0:00:0[34]", line)  # 200 rows left at ~50 rows/s
    progress.finish("done")
    assert stream.getvalue().endswith("done\n")


def test_clock() -> None:
    assert clock(3725.9) == "1:02:05"
    assert clock(-1) == "0:00:00"

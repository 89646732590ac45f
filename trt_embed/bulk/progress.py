"""Progress on stderr: rows done of the total, rows/s and tokens/s of this run, and the time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Redraws one line on a terminal; elsewhere (logs) prints a line every `every` seconds."""

    def __init__(self, total: int, *, done: int = 0, stream: TextIO | None = None, every: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if every is not None else (0.2 if self.tty else 10.0)
        self.total = total
        self.resumed = done
        self.rows = 0
        self.tokens = 0
        self.started = time.perf_counter()
        self._shown = 0.0

    def advance(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.tokens += tokens
        now = time.perf_counter()
        if now - self._shown >= self.every:
            self._shown = now
            self._show(end="" if self.tty else "\n")

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        done = self.resumed + self.rows
        rate = self.rows / elapsed
        total = max(self.total, done)
        share = f" ({100 * done / total:.1f}%)" if total else ""
        eta = clock((total - done) / rate) if rate > 0 else "?"
        return (
            f"{done:,}/{total:,} rows{share} | {rate:,.0f} rows/s | {self.tokens / elapsed:,.0f} tokens/s | ETA {eta}"
        )

    def _show(self, end: str) -> None:
        prefix = "\r\x1b[2K" if self.tty else ""
        self.stream.write(f"{prefix}{self.line()}{end}")
        self.stream.flush()

    def finish(self, message: str) -> None:
        self._show(end="\n")
        self.stream.write(message + "\n")
        self.stream.flush()

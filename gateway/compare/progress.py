"""A plain-text progress line on stderr.

On a terminal the line is redrawn in place (at most 10 times a second); anywhere else (CI logs, a pipe,
a file) a new line is printed at start, at every 10% and at the end, so logs stay short and readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24


class Progress:
    def __init__(
        self, total: int, stream: TextIO | None = None, *, tty: bool | None = None, label: str = "compare"
    ) -> None:
        self.total = total
        self.done = 0
        self.errors = 0
        self.retries = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.label = label
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def start(self, already: int) -> None:
        extra = f" ({already} already done in an earlier run)" if already else ""
        self._print(f"{self.label}: {self.total} to do{extra}")
        self._last_decile = 0

    def step(self, *, error: bool = False) -> None:
        self.done += 1
        self.total = max(self.total, self.done)  # never "102%", whatever the estimate said
        if error:
            self.errors += 1
        self._maybe_draw()

    def shrink(self, n: int = 1) -> None:
        """Work that will not happen after all (a judgement whose answer failed)."""
        self.total = max(self.done, self.total - n)
        self._maybe_draw()

    def retry(self) -> None:
        self.retries += 1

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
        else:
            self._print(self.line())

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * _WIDTH)
        elapsed = time.monotonic() - self._started
        parts = [
            f"{self.label}: [{'#' * filled}{'-' * (_WIDTH - filled)}] {frac:4.0%} {self.done}/{self.total}",
            f"{self.errors} failed",
            f"{self.retries} retried",
            f"{elapsed:.0f}s elapsed",
        ]
        if 0 < self.done < self.total:
            parts.append(f"~{elapsed / self.done * (self.total - self.done):.0f}s left")
        return " · ".join(parts)

    def _maybe_draw(self) -> None:
        if self.done >= self.total:
            return  # finish() prints the last line
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1:
                self._last_draw = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
            return
        decile = int(10 * self.done / self.total) if self.total else 10
        if decile > self._last_decile:
            self._last_decile = decile
            self._print(self.line())

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

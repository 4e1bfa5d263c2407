"""The run's memory on disk: ``results.jsonl`` (one line per item x system) and ``judgements.jsonl``
(one line per item x pool, the pairwise preference against the baseline).

Lines are appended and flushed as each result arrives, so an interrupted run loses at most the requests
that were in flight. On a rerun, an ``ok`` line means done; a later line for the same key replaces an
earlier one (a failed request is asked again). A half-written last line (the process was killed while
writing) is ignored, and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

RESULTS = "results.jsonl"
JUDGEMENTS = "judgements.jsonl"


def jsonable(value: Any) -> Any:
    """Decimals as exact strings (JSON readers must not turn money into floats), recursively."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for text in f:
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                continue  # cut short by an interruption: the request is simply asked again
            if isinstance(data, dict) and isinstance(data.get("key"), str):
                yield data


class JsonlLog:
    """Latest line per key, and appends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.latest: dict[str, dict[str, Any]] = {}
        for line in read_lines(path):
            self.latest[line["key"]] = line
        self._file: IO[str] | None = None

    def done(self, key: str) -> bool:
        line = self.latest.get(key)
        return line is not None and line.get("status") == "ok"

    def get(self, key: str) -> dict[str, Any] | None:
        return self.latest.get(key)

    def append(self, line: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
            self._file = self.path.open("a", encoding="utf-8")
            if needs_newline:
                self._file.write("\n")
        data = jsonable(line)
        self._file.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        self.latest[data["key"]] = data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def result_key(item_key: str, system: str) -> str:
    return f"{item_key}:{system}"

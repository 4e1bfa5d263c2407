"""Structured logs: one JSON object per line, one line per request.

A request line carries who called (key name, never the key), what (model or pool, mode), the outcome,
latency, cost and each member's outcome. Prompts and answers are left out unless the operator sets
``logging.content: true``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from gateway.wire import jsonutil

LOGGER = "fusion_gateway"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return jsonutil.dumps(out).decode()


def configure(level: str = "info") -> logging.Logger:
    """Send the gateway's logs to stderr as JSON lines. Idempotent: replaces earlier handlers."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = JsonLinesHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs. Request lines take a shortcut through :meth:`write_line`."""

    def write_line(self, line: bytes) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line.decode())
            self.flush()


def log_request(logger: logging.Logger, fields: dict[str, Any]) -> None:
    """One line per request, on the hot path. With the gateway's own handler in place the line is written
    directly (a LogRecord and a formatter pass cost about three times as much); with any other set-up,
    for example a test's capture, it goes through logging as usual."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logger.handlers
    if len(handlers) == 1 and type(handlers[0]) is JsonLinesHandler:
        line = {"ts": round(time.time(), 3), "level": "info", "logger": logger.name, "msg": "request", **fields}
        handlers[0].write_line(jsonutil.dumps(line) + b"\n")
        return
    logger.info("request", extra={"fields": fields})

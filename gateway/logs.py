"""Structured logs: one JSON object per line, one line per request.

A request line carries who called (key name, never the key), what (model or pool, mode), the outcome,
latency, cost and each member's outcome. Prompts and answers are left out unless the operator sets
``logging.content: true``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from gateway import jsonutil

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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log_request(logger: logging.Logger, fields: dict[str, Any]) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info("request", extra={"fields": fields})

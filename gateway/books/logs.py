"""Structured logs: one JSON object per line, for every line the process writes.

The gateway's own lines, the server's (uvicorn: start-up, errors), warnings and any library that logs
all go through :class:`JsonFormatter`, so a log shipper never meets a line it cannot parse. Each line
has ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and ``msg``.

A request line (``msg: "request"``) carries method, path, client address, who called (key name, never
the key), what (model or pool, mode), the outcome, tokens in and out, latency, cost, each member's outcome
and the trace id when tracing is on. Prompts and answers are left out unless the operator sets
``logging.content: true``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from gateway.wire import jsonutil

LOGGER = "fusion_gateway"

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}
#: uvicorn's access-record arguments, in the order its protocols pass them
_ACCESS_ARGS = ("client", "method", "path", "http_version", "status")


def iso_utc(t: float) -> str:
    """``2026-12-02T01:51:19.123Z``: ISO 8601 in UTC, to the millisecond."""
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((t - secs) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # uvicorn's own access line, should it be switched on: its fields, not its text
            out["msg"] = "request"
            out.update(zip(_ACCESS_ARGS, record.args, strict=True))
        else:
            out["msg"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return jsonutil.dumps(out).decode()


def configure(level: str = "info") -> logging.Logger:
    """Send the gateway's logs to stderr as JSON lines. Idempotent: replaces earlier handlers.

    The root logger gets the same handler (at ``warning``), so a library's warning or an unretrieved
    task exception is a JSON line too, and Python warnings are routed through logging.
    """
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(_handler())
    logger.setLevel(level.upper())
    logger.propagate = False
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_handler())
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return logger


def _handler() -> JsonLinesHandler:
    handler = JsonLinesHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def server_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's ``log_config``: its loggers write JSON lines to stderr like the gateway's own."""
    handler = {"class": f"{__name__}.JsonLinesHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs. Request lines take a shortcut through :meth:`write_line`.

    Request lines written from the event loop are collected and go out together when the loop's current
    pass is over: one write for every request that ended in that pass, instead of one each (measured:
    about 3% of a cache hit's cost). Any other line, and :meth:`flush` (which ``logging.shutdown`` calls at
    exit), writes what is collected first, so lines keep their order.
    """

    #: (a whole second, its ISO 8601 text): request lines in the same second format the date once
    _second: tuple[int, str] = (-1, "")

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[bytes] = []

    def timestamp(self, t: float) -> str:
        """:func:`iso_utc`, with the date and time to the second formatted once per second."""
        secs = int(t)
        second = self._second
        if second[0] != secs:
            second = self._second = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
        return f"{second[1]}.{int((t - secs) * 1000):03d}Z"

    def write_line(self, line: bytes) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            pending.append(line)
            if len(pending) > 1:
                return  # a write is already due
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # not on an event loop: write it now
                self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                self.stream.write(b"".join(self._pending).decode())
                self._pending.clear()
            super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.flush()
        super().emit(record)


def log_request(logger: logging.Logger, fields: dict[str, Any], level: int = logging.INFO) -> None:
    """One line per request, on the hot path. With the gateway's own handler in place the line is written
    directly (a LogRecord and a formatter pass cost about three times as much); with any other set-up,
    for example a test's capture, it goes through logging as usual."""
    if not logger.isEnabledFor(level):
        return
    handlers = logger.handlers
    if len(handlers) == 1 and type(handlers[0]) is JsonLinesHandler:
        handler = handlers[0]
        line = {"ts": handler.timestamp(time.time()), "level": _LEVELS.get(level, "info"), "logger": logger.name,
                "msg": "request", **fields}
        handler.write_line(jsonutil.dumps(line) + b"\n")
        return
    logger.log(level, "request", extra={"fields": fields})

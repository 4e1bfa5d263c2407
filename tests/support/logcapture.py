"""The gateway's log lines, captured in memory as the JSON the process would write."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gateway.books.logs import LOGGER, JsonFormatter


@contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """Every line the gateway's logger writes at info and above while the block runs."""
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logged
    finally:
        logger.removeHandler(handler)


def request_lines(logged: io.StringIO) -> list[dict[str, Any]]:
    """The request lines among ``logged``, parsed."""
    return [json.loads(x) for x in logged.getvalue().splitlines() if '"msg":"request"' in x]

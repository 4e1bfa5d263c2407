"""Server-sent events: an incremental decoder that follows the WHATWG rules, and the encoder.

Upstream bytes arrive split anywhere (inside a multi-byte UTF-8 character, between CR and LF); the decoder
only cuts at line ends, which are ASCII, so characters are never split when a line is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.wire import jsonutil

_BOM = b"\xef\xbb\xbf"

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Feed bytes, get complete events. An event cut off by the end of the stream is dropped."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_last_id", "_pending_cr", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._last_id: str | None = None
        self._pending_cr = False
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._pending_cr = False
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]
        events: list[SSEEvent] = []
        start = 0
        if b"\r" not in buf:
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                ev = self._line(buf[start:end])
                start = end + 1
                if ev is not None:
                    events.append(ev)
        else:
            n = len(buf)
            while start < n:
                i_lf = buf.find(b"\n", start)
                i_cr = buf.find(b"\r", start)
                if i_lf < 0 and i_cr < 0:
                    break
                if i_cr < 0 or (0 <= i_lf < i_cr):
                    end, nxt = i_lf, i_lf + 1
                elif i_cr + 1 < n:
                    end, nxt = i_cr, i_cr + 2 if buf[i_cr + 1] == 0x0A else i_cr + 1
                else:
                    end, nxt = i_cr, i_cr + 1
                    self._pending_cr = True
                ev = self._line(buf[start:end])
                start = nxt
                if ev is not None:
                    events.append(ev)
        self._buf = buf[start:]
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None  # comment
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored: the gateway does not reconnect upstream streams
        return None

    def _dispatch(self) -> SSEEvent | None:
        if self._id is not None:
            self._last_id = self._id
        if not self._data:
            self._event = ""
            return None
        ev = SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._last_id)
        self._data = []
        self._event = ""
        return ev


def encode(obj: Any) -> bytes:
    return b"data: " + jsonutil.dumps(obj) + b"\n\n"


def comment(text: str) -> bytes:
    """A comment line: keeps a connection alive without an event (clients ignore it)."""
    return b": " + text.encode() + b"\n\n"

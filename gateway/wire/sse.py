"""Server-sent events: an incremental decoder that follows the WHATWG rules, and the encoder.

Upstream bytes arrive split anywhere (inside a multi-byte UTF-8 character, between CR and LF); the decoder
only cuts at line ends, which are ASCII, so characters are never split when a line is decoded.

The decoder runs in time linear in its input whatever the upstream sends: bytes without a line end are
kept as a list of pieces and joined once, when the line ends. A line or an event longer than
``max_event_bytes`` raises :class:`EventTooLarge` instead of growing without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.wire import jsonutil

_BOM = b"\xef\xbb\xbf"

DONE = b"data: [DONE]\n\n"
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024


class EventTooLarge(Exception):
    """An event (or one of its lines) is longer than the decoder accepts."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Feed bytes, get complete events. An event cut off by the end of the stream is dropped."""

    __slots__ = ("_buf", "_data", "_data_size", "_event", "_id", "_last_id", "_max", "_parts", "_pending",
                 "_pending_cr", "_started")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = b""
        self._parts: list[bytes] = []  # a line still without its end, in pieces: joined once, when it ends
        self._pending = 0  # bytes of the unfinished line (_buf and _parts)
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._id: str | None = None
        self._last_id: str | None = None
        self._pending_cr = False
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._pending_cr = False
        if self._started and b"\n" not in chunk and b"\r" not in chunk:
            self._parts.append(chunk)  # still inside one line: keep it, copy nothing
            self._pending += len(chunk)
            if self._pending > self._max:
                self._too_large()
            return []
        if self._parts:
            buf = b"".join([self._buf, *self._parts, chunk])
            self._parts = []
            self._pending = 0
        else:
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
            i_lf = buf.find(b"\n")
            i_cr = buf.find(b"\r")
            while start < n:
                # each search resumes past the last line: with both kinds of line end mixed, a position
                # found earlier is kept until passed, so the walk stays linear
                if 0 <= i_lf < start:
                    i_lf = buf.find(b"\n", start)
                if 0 <= i_cr < start:
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
        self._pending = len(self._buf)
        if self._pending > self._max:
            self._too_large()
        return events

    def _too_large(self) -> None:
        self._buf, self._parts, self._data = b"", [], []  # let the memory go now, not with the exception
        raise EventTooLarge(f"an event is longer than {self._max} bytes")

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
            self._data_size += len(raw)
            if self._data_size > self._max:
                self._too_large()
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
            self._data_size = 0
            return None
        ev = SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._last_id)
        self._data = []
        self._data_size = 0
        self._event = ""
        return ev


def encode(obj: Any) -> bytes:
    return b"data: " + jsonutil.dumps(obj) + b"\n\n"


def comment(text: str) -> bytes:
    """A comment line: keeps a connection alive without an event (clients ignore it)."""
    return b": " + text.encode() + b"\n\n"

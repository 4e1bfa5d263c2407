"""The SSE decoder follows the WHATWG rules wherever the bytes are split."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire.sse import SSEDecoder, SSEEvent, comment, encode

STREAM = (
    "\ufeffdata: {\"a\": \"caf\u00e9 \u65e5\u672c \U0001f389\"}\r\n\r\n"
    ": a comment line\n"
    "data:no-space\n\n"
    "event: custom\rdata: line one\rdata: line two\r\r"
    "id: 7\ndata: {\"b\": 1}\n\n"
    "retry: 1000\nunknown: x\n\n"
    "data\n\n"
    "data: [DONE]\n\n"
    "data: cut off without the blank line"
).encode()

EXPECTED = [
    SSEEvent("message", '{"a": "caf\u00e9 \u65e5\u672c \U0001f389"}'),
    SSEEvent("message", "no-space"),
    SSEEvent("custom", "line one\nline two"),
    SSEEvent("message", '{"b": 1}', "7"),
    SSEEvent("message", "", "7"),
    SSEEvent("message", "[DONE]", "7"),
]


def decode(parts: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    out: list[SSEEvent] = []
    for p in parts:
        out.extend(decoder.feed(p))
    return out


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


def test_every_single_split_point() -> None:
    for i in range(len(STREAM) + 1):
        assert decode([STREAM[:i], STREAM[i:]]) == EXPECTED, i


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_rechunking(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    assert decode([STREAM[a:b] for a, b in itertools.pairwise(points)]) == EXPECTED


@settings(max_examples=200)
@given(st.lists(st.text(), min_size=1, max_size=5), st.data())
def test_encoded_events_round_trip(payloads: list[str], data: st.DataObject) -> None:
    raw = b"".join([comment("keep-alive"), *(encode({"t": p}) for p in payloads)])
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=8))
    points = [0, *sorted(cuts), len(raw)]
    events = decode([raw[a:b] for a, b in itertools.pairwise(points)])


    assert [json.loads(e.data)["t"] for e in events] == payloads

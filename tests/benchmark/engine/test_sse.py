"""The SSE decoder: the same events whatever the chunking, per the event-stream rules servers rely on."""

from __future__ import annotations

import pytest

from benchmark.engine.sse import SSEDecoder


def decode_in_pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    dec = SSEDecoder()
    out: list[bytes] = []
    bounds = [0, *cuts, len(stream)]
    for a, b in zip(bounds, bounds[1:]):
        out += dec.feed(stream[a:b])
    return out


STREAM = (
    b": keep-alive comment\n\n"
    b'data:{"a":1}\n\n'  # no space (TGI/axum)
    b'data: {"b":2}\n\n'  # one space (OpenAI, vLLM)
    b"data:  two spaces keeps one\n\n"
    b"event: message\nid: 7\ndata: first line\ndata:second line\n\n"
    b": comment only\n\n"
    b"id: 8\n\n"  # no data: not an event
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a":1}', b'{"b":2}', b" two spaces keeps one", b"first line\nsecond line", b"[DONE]"]


def test_every_two_way_split_gives_the_same_events() -> None:
    assert decode_in_pieces(STREAM, []) == EXPECTED
    for cut in range(1, len(STREAM)):
        assert decode_in_pieces(STREAM, [cut]) == EXPECTED, f"split at byte {cut}"


def test_byte_by_byte_and_crlf_and_cr_line_ends() -> None:
    for newline in (b"\r\n", b"\r"):
        stream = STREAM.replace(b"\n", newline)
        assert decode_in_pieces(stream, list(range(1, len(stream)))) == EXPECTED, newline
        for cut in range(1, len(stream)):
            assert decode_in_pieces(stream, [cut]) == EXPECTED, (newline, cut)


def test_an_event_is_returned_by_the_chunk_that_completes_it() -> None:
    dec = SSEDecoder()
    assert dec.feed(b'data:{"x":1}\n') == []
    assert dec.pending == b'data:{"x":1}\n'
    assert dec.feed(b"\ndata:{") == [b'{"x":1}']
    assert dec.feed(b'"y":2}\n\ndata:{"z":3}\n\n') == [b'{"y":2}', b'{"z":3}']
    assert dec.pending == b""


@pytest.mark.parametrize("extra_blank_lines", [1, 2, 3])
def test_extra_blank_lines_between_events_are_ignored(extra_blank_lines: int) -> None:
    stream = b"data: a\n\n" + b"\n" * extra_blank_lines + b"data: b\n\n"
    assert decode_in_pieces(stream, []) == [b"a", b"b"]

"""Incremental Server-Sent Events decoding: bytes in, ``data`` payloads of complete events out.

Follows the WHATWG event-stream rules the servers rely on: lines end in LF, CRLF or CR; a blank
line ends an event; ``data:`` with or without one space after the colon; several ``data`` lines
of one event are joined with LF; lines starting with ``:`` are comments (TGI's keep-alives);
other fields (``event``, ``id``, ``retry``) are ignored; an event without ``data`` is dropped.

Pure and allocation-light: ``feed`` returns the payloads completed by that chunk, so a caller
that stamps ``time.perf_counter()`` when the chunk arrived stamps each event with the arrival
of its last byte, not with when a buffer was later split. When every event of a chunk is one
``data:`` line (the common case) the chunk costs a few C-level scans and one slice per event.
"""

from __future__ import annotations

__all__ = ["SSEDecoder"]


class SSEDecoder:
    """Feed it chunks as they arrive; it returns the data payload of each event they complete."""

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False  # the previous chunk ended in CR: a LF starting this one belongs to it

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\r" in chunk or self._cr:
            chunk = self._normalise(chunk)
        buf = self._buf + chunk if self._buf else chunk
        if b"\n\n" not in buf:
            self._buf = buf
            return []
        blocks = buf.split(b"\n\n")
        self._buf = rest = blocks.pop()
        # Fast path, all in C: every complete event is one "data:" line. No newline inside the
        # events (a JSON payload never holds a raw one) and each starts with "data:".
        end = len(buf) - len(rest)
        n = len(blocks)
        if buf.count(b"\n", 0, end) == 2 * n and buf.startswith(b"data:") and buf.count(b"\n\ndata:", 0, end) == n - 1:
            spaced = buf.startswith(b"data: ") + buf.count(b"\n\ndata: ", 0, end)
            if spaced == 0:
                return [b[5:] for b in blocks]
            if spaced == n:
                return [b[6:] for b in blocks]
        out: list[bytes] = []
        for block in blocks:
            if block[:5] == b"data:" and b"\n" not in block:
                out.append(block[6:] if block[5:6] == b" " else block[5:])
            elif block:
                data = _parse_block(block)
                if data is not None:
                    out.append(data)
        return out

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (what a stream cut short leaves behind)."""
        return self._buf

    def _normalise(self, chunk: bytes) -> bytes:
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = chunk[-1:] == b"\r"
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _parse_block(block: bytes) -> bytes | None:
    """The general case: several lines, comments, other fields."""
    lines = block[1:].split(b"\n") if block[:1] == b"\n" else block.split(b"\n")
    data: list[bytes] = []
    for line in lines:
        if not line or line[:1] == b":":
            continue
        name, colon, value = line.partition(b":")
        if name != b"data":
            continue
        if colon and value[:1] == b" ":
            value = value[1:]
        data.append(value)
    return b"\n".join(data) if data else None

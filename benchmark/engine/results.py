"""Crash-safe results: one JSON line per ``RequestRecord``, appended as each request completes.

Each line goes to the OS in a single ``write`` and is flushed at once, so a Ctrl-C, a crash or
a SIGKILL keeps every record written so far (the page cache survives the process); ``fsync``
runs every ``fsync_every`` seconds in a background thread (it can take milliseconds, which
would stall the event loop and delay every timestamp) and on close, so an OS crash loses at
most that much. ``read_records`` rebuilds the records from the file alone and tolerates a torn last line
(the one write a killed process may leave half done); damage anywhere else is an error.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

import orjson

from benchmark.engine.records import RequestRecord
from benchmark.errors import BenchmarkError

__all__ = ["ResultsWriter", "read_records"]


class ResultsWriter:
    """Appends records to a JSONL file, one flushed line each."""

    def __init__(self, path: str | os.PathLike[str], *, fsync_every: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0
        # unbuffered: each write() below is one system call carrying one whole line
        self._file = open(self.path, "ab", buffering=0)
        self._synced = 0
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, args=(fsync_every,), daemon=True,
                                        name=f"fsync {self.path.name}")
        self._syncer.start()

    def write(self, record: RequestRecord) -> None:
        # orjson serialises the slotted dataclass directly, ~10x faster than asdict + json
        self.write_line(orjson.dumps(record))

    def write_line(self, line: bytes) -> None:
        """Append one record already serialised as one JSON line (no newline)."""
        self._file.write(line + b"\n")
        self.count += 1

    def _sync_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            count = self.count
            if count != self._synced:
                os.fsync(self._file.fileno())
                self._synced = count

    def close(self) -> None:
        if self._file.closed:
            return
        self._stop.set()
        self._syncer.join()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsWriter({str(self.path)!r}, count={self.count})"


def read_records(path: str | os.PathLike[str]) -> list[RequestRecord]:
    """All records of a results file; a torn (unterminated, unparsable) last line is dropped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BenchmarkError(f"cannot read results file {str(path)!r}: {e.strerror}") from e
    lines = data.split(b"\n")
    torn_tail = lines.pop()  # b"" when the file ends with a newline, as every complete file does
    records: list[RequestRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        records.append(_parse(line, path, number))
    if torn_tail.strip():
        try:
            records.append(_parse(torn_tail, path, len(lines) + 1))
        except BenchmarkError:
            pass  # the half-written line of a killed run: everything before it is intact
    return records


def _parse(line: bytes, path: Path, number: int) -> RequestRecord:
    try:
        data = orjson.loads(line)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return RequestRecord.from_dict(data)
    except (orjson.JSONDecodeError, TypeError) as e:
        raise BenchmarkError(f"results file {str(path)!r} line {number} is not a request record: {e}") from e

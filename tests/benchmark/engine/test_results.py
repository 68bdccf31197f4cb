"""Crash-safe results: records survive as written, a torn tail is dropped, damage elsewhere is named."""

from __future__ import annotations

import pytest

from benchmark.engine.records import RequestRecord
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.errors import BenchmarkError


def record(i: int, **kw: object) -> RequestRecord:
    base: dict[str, object] = dict(request_id=f"r{i}", model="m", scenario="alone", prompt_id="qa", api="tgi-stream",
                                   intended_send=i * 0.1, sent=i * 0.1 + 1e-5, ttft=0.05, itl=[0.01, 0.0125],
                                   e2e=0.0752, output_tokens=3, finish_reason="length", http_status=200, success=True)
    return RequestRecord(**(base | kw))  # type: ignore[arg-type]


def test_written_records_read_back_equal_and_visible_before_close(tmp_path) -> None:
    path = tmp_path / "sub" / "requests.jsonl"
    records = [record(0), record(1, success=False, error_kind="timeout", error="timed out", ttft=None, itl=[])]
    writer = ResultsWriter(path)
    writer.write(records[0])
    assert read_records(path) == records[:1]  # on disk as soon as written, before close
    writer.write(records[1])
    writer.close()
    assert read_records(path) == records
    with ResultsWriter(path) as again:  # appends, never truncates
        again.write(record(2))
    assert [r.request_id for r in read_records(path)] == ["r0", "r1", "r2"]


def test_torn_last_line_is_dropped(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    with ResultsWriter(path) as w:
        w.write(record(0))
        w.write(record(1))
    full = path.read_bytes()
    last = full.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last + 1, len(full) - 1):  # every way the last write can be cut short
        path.write_bytes(full[:cut])
        assert [r.request_id for r in read_records(path)] == ["r0"], cut


def test_damaged_middle_line_is_an_error_naming_file_and_line(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(record(0).to_json().encode() + b"\n{oops\n" + record(1).to_json().encode() + b"\n")
    with pytest.raises(BenchmarkError, match=r"requests.jsonl.* line 2"):
        read_records(path)


def test_missing_file_is_an_error(tmp_path) -> None:
    with pytest.raises(BenchmarkError, match="cannot read results file"):
        read_records(tmp_path / "nope.jsonl")

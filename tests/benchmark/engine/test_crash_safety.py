"""A load run killed with SIGKILL mid-way: the JSONL it leaves rebuilds the summary of every
request it finished, as the server's truth log confirms."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmark.analysis.summary import summarize
from benchmark.engine.results import read_records
from benchmark.sim.process import sim_process
from benchmark.sim.truth import read_truth

CONCURRENCY = 4


def test_sigkill_mid_run_leaves_a_file_that_rebuilds_the_finished_requests(tmp_path: Path) -> None:
    sim_model = {"key": "m", "model_id": "example/m", "warmup_s": 0.0, "prefill_base_s": 0.002,
                 "decode_base_s": 0.003, "max_concurrent_requests": 64}
    with sim_process({"models": [sim_model]}, tmp_path) as (urls, truth_path):
        out = tmp_path / "run"
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmark", "load", "--endpoint", f"m={urls['m']}", "--concurrency",
             str(CONCURRENCY), "--requests", "100000", "--max-new-tokens", "8", "--out", str(out), "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        path = out / "requests.jsonl"
        deadline = time.monotonic() + 30
        while not (path.exists() and path.read_bytes().count(b"\n") >= 60):
            assert child.poll() is None, child.stderr.read() if child.stderr else child.returncode
            assert time.monotonic() < deadline, "the load never wrote 60 records"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL

        records = read_records(path)
        ids = [r.request_id for r in records]
        truth = read_truth(truth_path, ids)
    assert len(records) >= 60 and len(set(ids)) == len(ids)
    for r in records:  # every record is whole and agrees with what the server did
        t = truth[r.request_id]
        assert r.success and r.output_tokens == t.generated_tokens == 8, r
        assert r.e2e is not None and r.ttft is not None and len(r.itl) == 7
    # nothing the client finished is missing: only the requests in flight at the kill may be
    finished_by_server = {i for i, t in truth.items() if t.status == 200 and t.generated_tokens == 8}
    assert set(ids) <= finished_by_server
    assert len(finished_by_server - set(ids)) <= CONCURRENCY
    # the summary rebuilt from the file alone covers exactly those requests
    row = summarize(records).iloc[0]
    assert (row["count"], row["successes"], row["failures"]) == (len(records), len(records), 0)
    assert row["output_tokens_total"] == sum(truth[i].generated_tokens for i in ids)
    assert row["e2e_count"] == len(records) and row["itl_count"] == 7 * len(records)
    first = min(r.intended_send for r in records)
    last = max(r.intended_send + (r.e2e or 0.0) for r in records)
    assert row["duration_s"] == last - first

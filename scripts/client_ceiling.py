"""The benchmark client's own ceiling on this machine (``make bench-client``; not a test).

1. Starts a private nginx on 127.0.0.1 (config, prefix and files in a temp dir) that answers
   ``POST /generate_stream`` with a pre-rendered TGI SSE body of 100 token events (the last one
   the final event with ``details``), ``text/event-stream``, keep-alive; measures that
   server's own ceiling with wrk.
2. Drives it with the engine (``benchmark.runner.run_load``, the code path of
   ``python -m benchmark load``) closed-loop at concurrency 16, 64 and 256 for ``--duration``
   s each: streamed requests/s, SSE events/s, achieved vs requested concurrency, client CPU.
3. Measures the timing error against the TGI simulator in its own process (20 ms per token,
   its truth log) at concurrency 1, 64 and 256: p50/p99/max of |client - truth| for TTFT,
   every ITL and E2E, and the share within 2 ms (target: 97 %, of all figures at 1 and of
   each metric at 64), and the client's own pauses in each run: the event loop's longest
   stall (target at 256: at most 5 ms), the garbage collections inside the measured window,
   and the new connections' setup time. These are measurements of this machine, not tests:
   ``make test`` checks the same runs only with bounds a loaded machine meets.

Prints one table with the targets beside the figures (PASS/MISS). Installs nothing: without
nginx or wrk it says what to install. Under a minute.

    .venv/bin/python scripts/client_ceiling.py [--duration 5] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
# the timing test's own helpers, so that the script and the test measure the same way
from benchmark.engine.patterns import closed_loop  # noqa: E402
from benchmark.engine.records import RunClock  # noqa: E402
from benchmark.engine.results import ResultsWriter, read_records  # noqa: E402
from benchmark.engine.runner import Target, run_load_sync  # noqa: E402
from benchmark.engine.selfcheck import (
    OthersLoad,  # noqa: E402
    SelfCheck,  # noqa: E402
)
from benchmark.sim.process import sim_model, sim_process  # noqa: E402
from benchmark.sim.truth import read_truth, timing_errors  # noqa: E402

TOKENS = 100
TARGET_RPS_AT_64 = 1500.0  # streamed 100-token requests/s at concurrency 64
TARGET_CONCURRENCY_SHARE = 0.95  # achieved within 5% of requested, up to 256
TOLERANCE_S = 0.002  # the timing bound
TIMING_SHARE = 0.97  # of the figures within it (a target of this benchmark; `make test` asserts looser bounds)
TOKEN_S = 0.020  # simulated time per token for the timing runs
STALL_TARGET_S = 0.005  # the longest event-loop stall at concurrency 256 against the simulator


def tgi_stream_body(n: int) -> bytes:
    """A ``/generate_stream`` body of ``n`` token events as TGI writes it: compact JSON
    ``StreamResponse`` objects (router/src/lib.rs), ``data:`` lines, the last event carrying
    ``generated_text`` and ``details``."""
    events = []
    for i in range(n):
        last = i == n - 1
        event = {"index": i + 1, "token": {"id": 1000 + i, "text": " tok", "logprob": -0.25, "special": False},
                 "top_tokens": None, "generated_text": " tok" * n if last else None,
                 "details": {"finish_reason": "length", "generated_tokens": n, "seed": None,
                             "input_length": 20} if last else None}
        events.append(b"data:" + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
    return b"".join(events)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp_body; proxy_temp_path {d}/tmp_proxy; fastcgi_temp_path {d}/tmp_fastcgi;
    uwsgi_temp_path {d}/tmp_uwsgi; scgi_temp_path {d}/tmp_scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    tcp_nodelay on;
    types {{ }}
    default_type text/event-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/www;
        # the static handler answers POST with 405: serve the same file as 200 then (a 15 kB
        # body is too long for `return` in nginx.conf)
        location = /generate_stream {{ error_page 405 =200 $uri; }}
    }}
}}
"""


@contextmanager
def nginx_serving(body: bytes) -> Iterator[str]:
    """nginx on a free port of 127.0.0.1 answering POST /generate_stream with ``body``."""
    with tempfile.TemporaryDirectory(prefix="client-ceiling-") as tmp:
        d = Path(tmp)
        d.chmod(0o755)  # nginx's worker may run as another user (nobody) and must read the body
        (d / "www").mkdir(mode=0o755)
        (d / "www" / "generate_stream").write_bytes(body)
        port = free_port()
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port), encoding="utf-8")
        proc = subprocess.Popen(["nginx", "-p", str(d), "-c", str(d / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    req = urllib.request.Request(url + "/generate_stream", data=b"{}", method="POST")
                    with urllib.request.urlopen(req, timeout=1) as resp:
                        if resp.read() != body or resp.headers.get_content_type() != "text/event-stream":
                            raise SystemExit("nginx answered something other than the SSE body")
                    break
                except OSError as e:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (d / "error.log").read_text(errors="replace") if (d / "error.log").exists() else ""
                        raise SystemExit(f"nginx did not start ({e}): {log[-500:]}") from e
                    time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def wrk_ceiling(url: str, connections: int, seconds: int) -> float:
    """Requests/s wrk gets from ``url`` with POSTs like the engine's."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                'wrk.body = \'{"inputs":"hello","parameters":{"max_new_tokens":100,"details":true}}\'\n')
    try:
        out = subprocess.run(["wrk", f"-t{min(2, os.cpu_count() or 1)}", f"-c{connections}", f"-d{seconds}s",
                              "-s", f.name, url + "/generate_stream"],
                             capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    finally:
        os.unlink(f.name)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors from nginx:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(m.group(1))


def drive(url: str, concurrency: int, workdir: Path, *, duration: float | None = None,
          requests: int | None = None, workers: int = 1) -> tuple[SelfCheck, list[Any], RunClock, float]:
    """One closed-loop run; also returns the share of the CPUs other processes used meanwhile."""
    clock = RunClock()
    target = Target(model="m", base_url=url, load=closed_loop(concurrency, duration=duration, max_requests=requests,
                                                               max_new_tokens=TOKENS), timeout=60.0)
    path = workdir / f"c{concurrency}-{time.monotonic_ns()}.jsonl"
    with ResultsWriter(path) as writer, OthersLoad() as others:
        report = run_load_sync([target], scenario="ceiling", writer=writer, clock=clock, progress=False,
                               workers=workers)
    return report, read_records(path), clock, others.share


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per concurrency against nginx (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="client processes (run_load workers=; default 1)")
    args = parser.parse_args()
    if args.duration <= 0 or args.workers < 1:
        parser.error(f"--duration {args.duration!r} must be > 0 and --workers {args.workers!r} >= 1")
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(f"{' and '.join(missing)} not found; install with: apt-get install -y nginx wrk", file=sys.stderr)
        return 2
    load1, _, _ = os.getloadavg()
    print(f"client ceiling on {os.cpu_count()} CPUs, load average {load1:.2f} at start, "
          f"{args.workers} client process(es), {TOKENS}-token streams")
    rows: list[tuple[str, str, str, str]] = []
    header = ("", "figure", "target", "other processes (share of the CPUs)")
    with tempfile.TemporaryDirectory(prefix="client-ceiling-runs-") as tmp:
        work = Path(tmp)
        with nginx_serving(tgi_stream_body(TOKENS)) as url:
            with OthersLoad() as others:
                wrk = wrk_ceiling(url, 64, 3)
            rows.append(("nginx ceiling (wrk, 64 connections)", f"{wrk:,.0f} req/s, {wrk * TOKENS:,.0f} events/s", "",
                         f"{others.share:.0%}"))
            for c in (16, 64, 256):
                report, records, _, busy = drive(url, c, work, duration=args.duration, workers=args.workers)
                t = report.targets[0]
                ok = sum(r.success for r in records)
                rps = ok / report.duration_s
                events = sum(len(r.itl) + 1 for r in records if r.success) / report.duration_s  # token events read
                got = t.achieved_concurrency
                rows.append((f"engine c={c}: streamed req/s", f"{rps:,.0f} req/s, {events:,.0f} events/s, "
                             f"{len(records) - ok} failed, client CPU {report.client_cpu:.0%}",
                             f">= {TARGET_RPS_AT_64:,.0f} req/s {verdict(rps >= TARGET_RPS_AT_64)}" if c == 64 else "",
                             f"{busy:.0%}"))
                rows.append((f"engine c={c}: achieved concurrency", f"{got:.1f}/{c} ({t.wire_concurrency:.1f} on the wire)",
                             f"within 5% {verdict(got >= TARGET_CONCURRENCY_SHARE * c)}", ""))
        # the simulator and the client on the same machine, each in its own process
        sim = {"models": [sim_model("m", decode_base_s=TOKEN_S)]}
        with sim_process(sim, work) as (urls, truth_path):
            for c, n in ((1, 5), (64, 192), (256, 512)):
                report, records, clock, busy = drive(urls["m"], c, work, requests=n, workers=args.workers)
                truth = read_truth(truth_path, [r.request_id for r in records])
                errors = timing_errors(records, truth, clock.origin)
                everything = np.concatenate([errors[k] for k in ("ttft", "itl", "e2e")])
                for metric in ("ttft", "itl", "e2e"):
                    e = np.asarray(errors[metric]) * 1e3
                    within = float(np.mean(e <= TOLERANCE_S * 1e3))
                    # at 64 each metric must meet the target on its own (E2E is the hard one: the
                    # streams end together); at 1 there are too few TTFTs and E2Es for a share
                    rows.append((f"timing c={c} {metric.upper()} |client - truth|",
                                 f"p50 {np.percentile(e, 50):.2f} p99 {np.percentile(e, 99):.2f} "
                                 f"max {e.max():.2f} ms, {within:.1%} within 2 ms",
                                 f">= {TIMING_SHARE:.0%} within 2 ms {verdict(within >= TIMING_SHARE)}" if c == 64 else "",
                                 ""))
                all_within = float(np.mean(everything <= TOLERANCE_S))
                rows.append((f"timing c={c}: all {everything.size} figures", f"{all_within:.1%} within 2 ms",
                             f">= {TIMING_SHARE:.0%} within 2 ms {verdict(all_within >= TIMING_SHARE)}"
                             if c == 1 else "(each metric above)" if c == 64 else "(no target)", f"{busy:.0%}"))
                t = report.targets[0]
                rows.append((f"timing c={c}: client pauses",
                             f"longest loop stall {report.loop_lag_max * 1e3:.2f} ms ({report.loop_stalls} over "
                             f"{STALL_TARGET_S * 1e3:g} ms, lag p99 {report.loop_lag_p99 * 1e3:.2f} ms); GC "
                             f"{report.gc_collections} collections ({report.gc_full} full), longest "
                             f"{report.gc_pause_max * 1e3:.2f} ms; {t.connections} connects, longest "
                             f"{t.connect_max * 1e3:.1f} ms",
                             f"stall <= {STALL_TARGET_S * 1e3:g} ms {verdict(report.loop_lag_max <= STALL_TARGET_S)}"
                             if c == 256 else "", ""))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    print()
    for name, value, target, busy in [header, *rows]:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {target:<{widths[2]}}  {busy}")
    load1, _, _ = os.getloadavg()
    print(f"\nload average {load1:.2f} at the end (the client shares {os.cpu_count()} CPUs with nginx / the simulator)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

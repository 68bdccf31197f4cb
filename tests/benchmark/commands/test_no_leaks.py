"""No leaks: a full offline `python -m benchmark run --outputs FILE --scenarios all` whose stack
outputs carry a (fake) kubeconfig token and whose environment carries (fake) Hugging Face
and AWS credentials writes none of them into its results, its logs or its report."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmark.commands.demo import simulated_stack
from benchmark.sim.background import BackgroundLoop

ROOT = Path(__file__).resolve().parents[3]
HF_TOKEN = "hf_noLeakCanary0123456789abcdefghijklmn"
AWS_SECRET = "noLeakCanaryAwsSecretKey0123456789abcdefg"


def _encodings(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), json.dumps(secret).encode()]


def test_a_full_plan_run_writes_no_secret_anywhere(tmp_path: Path) -> None:
    outputs = tmp_path / "private" / "outputs.json"  # kept apart, as the README asks
    results, cwd = tmp_path / "results", tmp_path / "cwd"
    outputs.parent.mkdir()
    cwd.mkdir()
    loop = BackgroundLoop()
    stack = simulated_stack(time_scale=0.05)
    try:
        sim = loop.call(stack.__aenter__(), 60)
        outputs.write_text(json.dumps(sim.outputs))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_TOKEN": HF_TOKEN,
            "HUGGING_FACE_HUB_TOKEN": HF_TOKEN,
            "AWS_ACCESS_KEY_ID": "AKIANOLEAKCANARY0123",
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        }
        argv = ["run", "--outputs", str(outputs), "--scenarios", "all", "--iterations", "1", "--max-new-tokens", "10",
                "--results-dir", str(results), "--ready-timeout", "60"]  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "benchmark", *argv], capture_output=True, env=env, cwd=cwd, timeout=300
        )
        calls = list(sim.api.calls)
        token = sim.api.token
    finally:
        loop.call(stack.__aexit__(None, None, None), 30)
        loop.close()
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    # The kubeconfig was used: every call to the fake API carried its token.
    assert any("/portforward" in path for _, path in calls) and any("/scale" in path for _, path in calls)
    written = [p for d in (results, cwd) for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "report.md" for p in written) and any(p.name == "requests.jsonl" for p in written)
    secrets = {"the kubeconfig token": token, "HF_TOKEN": HF_TOKEN, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
               "AWS_ACCESS_KEY_ID": "AKIANOLEAKCANARY0123"}  # fmt: skip
    places = {str(p.relative_to(tmp_path)): p.read_bytes() for p in written}
    places.update(stdout=run.stdout, stderr=run.stderr)
    leaks = [(name, where) for name, s in secrets.items() for where, data in places.items()
             if any(e in data for e in _encodings(s))]  # fmt: skip
    assert leaks == [], leaks

# Two entry points, each installing what it needs into .venv first:
#   make test   type check + the offline test suites (what CI runs)
#   make demo   the offline benchmark demo against simulated TGI servers
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# checkov (the manifests' security scan) pins versions that clash with requirements.txt:
# it gets a virtualenv of its own.
SCAN_VENV  := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed

.PHONY: test typecheck test-infra test-benchmark demo clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

$(SCAN_STAMP): requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-scan.txt
	touch $(SCAN_STAMP)

typecheck: $(STAMP)
	$(VENV)/bin/pyright

# The Pulumi-mock suites and the asyncio suites run in separate pytest processes:
# Pulumi's mock runtime breaks ("await wasn't used with future") when another user of
# the event loop ran first in the same process. A test that hangs fails after 300 s
# (pytest-timeout) instead of holding CI until its limit.
PYTEST := $(PY) -m pytest -q --timeout=300
test-infra: $(STAMP) $(SCAN_STAMP)
	$(PYTEST) tests/config tests/infra tests/workloads tests/policy

test-benchmark: $(STAMP)
	$(PYTEST) tests/benchmark

test: typecheck test-infra test-benchmark

demo: $(STAMP)
	$(PY) -m benchmark demo

clean:
	rm -rf $(VENV) $(SCAN_VENV) .pytest_cache

# The benchmark client's own ceiling on this machine: a private nginx (SSE body) and wrk, then
# the engine at concurrency 16/64/256 and its timing error against the simulator. Needs nginx
# and wrk (apt-get install -y nginx wrk); not part of `make test`. About a minute.
.PHONY: bench-client
bench-client: $(STAMP)
	$(PY) scripts/client_ceiling.py

# Two commands matter: `make demo` (the whole pipeline on the local test cluster) and `make test`.
# Both build .venv from requirements.lock when it is missing or older than the lock, and skip that when not.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.synced
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PY_DIRS := $(wildcard dags plugins tests bench)

.PHONY: demo demo-ui bench test lint fmt lock tools test-tools clean

$(STAMP): requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(VENV)/bin/python requirements.lock
	@touch $@

## demo: run the real DAG end to end on the local test cluster and print a report (V=1: with Airflow's logs;
## SCENARIO=nvidiadriver: drivers from NVIDIADriver resources, one per node pool)
demo: $(STAMP) tools
	PYTHONPATH=tests:plugins $(VENV)/bin/python -m harness.demo $(if $(V),--verbose) \
	  $(if $(SCENARIO),--scenario $(SCENARIO))

## demo-ui: airflow standalone wired to the local test cluster (Ctrl-C stops everything)
demo-ui: $(STAMP) tools
	PYTHONPATH=tests:plugins $(VENV)/bin/python -m harness.demo --ui

## bench: the measurements of bench/RESULTS.md (about 20 minutes; ARGS="--seconds 20" passes options on)
bench: $(STAMP) tools
	PYTHONPATH=tests:plugins $(VENV)/bin/python bench/run_all.py $(ARGS)

## test: unit, contract and end-to-end tests
test: $(STAMP) test-tools
	$(VENV)/bin/pytest

## lint: ruff (with the Airflow AIR rules) and shellcheck on every shell script
lint: $(STAMP)
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	@# tests/ has no __init__.py: two test files with one basename stop pytest's collection.
	@dups="$$(git ls-files 'tests/*test_*.py' | xargs -n1 basename | sort | uniq -d)"; \
	if [ -n "$$dups" ]; then echo "test file names used twice under tests/: $$dups" >&2; exit 1; fi
	$(VENV)/bin/shellcheck $$(git ls-files '*.sh') .ci/run

fmt: $(STAMP)
	$(VENV)/bin/ruff format $(PY_DIRS)
	$(VENV)/bin/ruff check --fix $(PY_DIRS)

## lock: re-resolve requirements.in into requirements.lock (every transitive version pinned)
lock:
	@test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/python -m pip install -q uv==$(UV_VERSION); }
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 --no-header -o requirements.lock

## tools: the Debian tools the demo and tests use for real (skopeo, the OCI registry)
tools:
	@missing=""; for t in skopeo docker-registry; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "missing:$$missing; install with: sudo apt-get install -y skopeo docker-registry"; exit 1; fi

## test-tools: also Chromium and its driver, for the browser test of the demo UI
test-tools: tools
	@missing=""; for t in chromium chromedriver; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "missing:$$missing; install with: sudo apt-get install -y chromium chromium-driver"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo

# Set-up, demo and tests on the embedded default: SQLite + LocalExecutor in .airflow/, venv in .venv/.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export NUMBA_CACHE_DIR ?= $(HOME)/.cache/oasis_ops/numba
export PYTHONPATH := $(CURDIR)/plugins
# oasislmf orders some input-file columns by set iteration: a fixed hash seed keeps inputs byte-identical.
export PYTHONHASHSEED := 0

.PHONY: setup pools warmup demo test test-fast lint browser ui celery-up celery-down compose image clean

setup: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.db pools

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(AIRFLOW_HOME)/airflow.cfg:
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/python -m oasis_ops.deploy.home $(AIRFLOW_HOME) > $@.tmp && mv $@.tmp $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.cfg
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log
	touch $@

pools: $(AIRFLOW_HOME)/airflow.db
	$(BIN)/python -m oasis_ops.deploy.pools

# oasislmf's numba kernels compiled once into NUMBA_CACHE_DIR, as the worker image does when it is built
# (oasis_ops/deploy/warmup.py; about 5 min cold on 2 cores). Cold, every process of a first analysis
# compiles the kernels it calls itself, so analyses started side by side compile the same kernels side by
# side (the test suite's load test: 645 s cold, 409 s after this on 2026-11-27).
warmup: $(VENV)/.numba-warm

$(VENV)/.numba-warm: $(VENV)/.installed
	$(BIN)/python -m oasis_ops.deploy.warmup
	touch $@

demo: setup warmup
	$(BIN)/python -m oasis_ops.tools.demo

# The embedded stack in the foreground: UI, REST API and the Oasis API (see oasis_ops/deploy/embedded.py).
ui: setup
	$(BIN)/python -m oasis_ops.deploy.embedded

# The production stack as local processes on PostgreSQL and Redis (see oasis_ops/deploy/celery_local.py).
# Not `setup`: its database steps would run against AIRFLOW__DATABASE__SQL_ALCHEMY_CONN before the
# launcher creates and migrates that database.
celery-up: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.cfg
	$(BIN)/python -m oasis_ops.deploy.celery_local up

celery-down:
	$(BIN)/python -m oasis_ops.deploy.celery_local down

# Re-render docker-compose.yaml from the registry (OASIS_MODEL_REGISTRY).
compose: setup
	$(BIN)/python -m oasis_ops.deploy.compose > docker-compose.yaml

# The model worker image (worker_image/) under the tag docker-compose.yaml and the registry default to
# (oasis_ops.constants.DEFAULT_WORKER_IMAGE). BASE_IMAGE=... builds it on another Debian bookworm image
# with Python 3.11 than python:3.11-slim-bookworm. (make test builds its own from a Debian stand-in base.)
WORKER_IMAGE ?= oasis-airflow-worker:3.3.2
image:
	docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -f worker_image/Dockerfile -t $(WORKER_IMAGE) .

# Everything: lint and types, unit tests, end-to-end DAG runs (e2e) and real Airflow stacks (stack);
# see pyproject.toml. TEST_WORKERS test files run at once (pytest-xdist; each file on one worker, its
# stack fixtures with it), the longest first (tests/conftest.py): the stack tests mostly wait on their
# services, so two at a time fit CI's 2 cores. Each worker's Celery stacks claim Redis databases of their
# own (15 in all), which bounds it.
TEST_WORKERS ?= 2
test: setup lint browser warmup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# ruff (incl. no heavy module-level imports in parse-time code) and mypy on the package.
lint: $(VENV)/.installed
	$(BIN)/ruff check plugins dags tests harness bench
	$(BIN)/mypy

# A real browser for the results page's test (tests/test_results_browser.py): Debian's chromium, which
# Playwright drives (its own browser download cannot work here). Installed once, as root (as on CI).
browser: $(CHROMIUM)

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation

# Unit and DAG-parsing tests only: no `airflow dags test` runs, no Airflow services.
test-fast: setup
	$(BIN)/python -m pytest tests -m "not e2e and not stack"

clean:
	rm -rf $(AIRFLOW_HOME) $(VENV)

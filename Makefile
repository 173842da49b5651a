# Set-up, demo and tests on the embedded default: SQLite + LocalExecutor in .airflow/, venv in .venv/.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export NUMBA_CACHE_DIR ?= $(HOME)/.cache/oasis_ops/numba
export PYTHONPATH := $(CURDIR)/plugins
# oasislmf orders some input-file columns by set iteration: a fixed hash seed keeps inputs byte-identical.
export PYTHONHASHSEED := 0

.PHONY: setup pools demo test ui celery-up celery-down compose clean

setup: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.db pools

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(AIRFLOW_HOME)/airflow.cfg:
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/python -m oasis_ops.home $(AIRFLOW_HOME) > $@.tmp && mv $@.tmp $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.cfg
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log
	touch $@

pools: $(AIRFLOW_HOME)/airflow.db
	$(BIN)/python -m oasis_ops.pools

demo: setup
	$(BIN)/python -m oasis_ops.demo

ui: setup
	$(BIN)/airflow standalone

# The production stack as local processes on PostgreSQL and Redis (see oasis_ops/celery_local.py).
celery-up: setup
	$(BIN)/python -m oasis_ops.celery_local up

celery-down:
	$(BIN)/python -m oasis_ops.celery_local down

# Re-render docker-compose.yaml from the registry (OASIS_MODEL_REGISTRY).
compose: setup
	$(BIN)/python -m oasis_ops.compose > docker-compose.yaml

test: setup
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(AIRFLOW_HOME) $(VENV)

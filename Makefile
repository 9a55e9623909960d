# The two commands a new user needs: `make demo` and `make test`.
# Each creates the virtual environment (.venv) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo migrate test lint typecheck check serve worker bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `campaigns demo` migrates the database first, runs the playbooks over six simulated weeks,
# then serves the dashboard with a demo sign-in (printed) until Ctrl-C.
demo: $(STAMP)
	$(BIN)/campaigns demo --serve

# The web app and the worker refuse a database behind the code: run this after an upgrade.
migrate: $(STAMP)
	$(BIN)/campaigns migrate

# .ci/services first: Redis, PostgreSQL and Chromium answer (installed or started when
# missing, or one line saying what is missing).
test: $(STAMP)
	.ci/services
	$(BIN)/python -m pytest -q

# ruff (lint and format) and import-linter (the arrows between the parts, docs/architecture.md).
lint: $(STAMP)
	$(BIN)/ruff check campaigns tests bench docs web.py worker.py
	$(BIN)/ruff format --check campaigns tests bench docs web.py worker.py
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

serve: $(STAMP)
	$(BIN)/flask --app web run

worker: $(STAMP)
	$(BIN)/python worker.py

bench: $(STAMP)
	$(BIN)/python bench/segments.py

clean:
	rm -rf $(VENV) campaigns.db campaigns.db-wal campaigns.db-shm outbox .pytest_cache .hypothesis

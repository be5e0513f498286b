# TaskHub: `make run` starts web, worker and beat; `make test` runs the suite.
# Both create the virtual environment first, so a fresh clone needs only Python 3.11 and make.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test lint migrate admin-user demo demo-data clean help bench bench-quick

help:
	@echo "make run    - install, migrate and start TaskHub (web, worker, beat) on http://127.0.0.1:$(PORT)"
	@echo "make test   - install the dev tools and run the whole test suite"
	@echo "make lint   - ruff check, ruff format --check, lint-imports (import contracts) and mypy (pyproject.toml)"
	@echo "make demo   - TaskHub with fake Jira, Confluence and Mattermost: watch Jira -> Excel -> Confluence -> Mattermost"
	@echo "make bench  - benchmarks (SQLite and PostgreSQL + Redis) beside raw Celery and APScheduler: table, JSON, chart"
	@echo "make bench-quick - the same measurements at small sizes (under 2 minutes)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

$(VENV)/.bench: requirements.txt requirements-dev.txt requirements-bench.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@ $(VENV)/.dev $(VENV)/.runtime

migrate: $(VENV)/.runtime
	$(BIN)/python manage.py check_config
	$(BIN)/python manage.py migrate --noinput

admin-user: migrate
	$(BIN)/python manage.py ensure_admin

run: admin-user
	@echo "TaskHub: http://127.0.0.1:$(PORT)/admin/  (Ctrl-C stops web, worker and beat; a crashed one is restarted)"
	$(BIN)/python -m taskhub.supervise --stop-with-parent

# Fake Jira, Confluence and Mattermost on 127.0.0.1, a demo config and database under .demo/,
# the seed's example tasks; prints where to look. Ctrl-C stops it; `make demo ARGS=--check` exits when done.
demo: $(VENV)/.runtime
	$(BIN)/python -m demo $(ARGS)

# The suite in parallel (pytest-xdist), one process per core by default; tests that start Celery
# processes run one at a time on one of them (tests/conftest.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto
test: $(VENV)/.dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

# Benchmarks (bench/): start PostgreSQL and Redis when possible (.ci/services.sh); bench/run.py
# benchmarks the embedded default and, when they answer, PostgreSQL + Redis. ARGS=--backends sqlite etc.
BENCH_SERVICES = bash -c '. .ci/services.sh && ensure_postgres && ensure_redis' \
	|| echo "PostgreSQL + Redis could not be started: only the embedded default is benchmarked"

bench: $(VENV)/.bench
	@$(BENCH_SERVICES)
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.bench
	@$(BENCH_SERVICES)
	$(BIN)/python -m bench.run --quick $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-logo && $(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache .mypy_cache

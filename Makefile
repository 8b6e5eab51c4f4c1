# The two commands a newcomer runs on a fresh machine: `make demo` and `make test`.
# Both set up everything they need: the virtualenv and Python packages, the Kafka broker's jars (Maven),
# and Debian packages (redis-server; Java and Maven when missing).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: help setup system-deps jars up down status demo test lint typecheck test-unit test-agents \
        test-integration bench soak clean

help:
	@echo "make demo   run the pipeline on the local stack and show what it does"
	@echo "make test   lint, type-check, and run the unit, agent and integration tests"
	@echo "make up / make down / make status   the local stack (Redis, Kafka, topics)"
	@echo "make bench  benchmarks, results in docs/BENCHMARKS.md"
	@echo "make soak   the chaos soak alone (ten minutes of faults under load), results in docs/BENCHMARKS.md"

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

ASSETS := streams/console/static/vendor/.vendored

setup: $(INSTALLED) system-deps jars $(ASSETS)

# The console page's libraries from npm (web/package-lock.json), vendored: nothing is fetched at run time.
$(ASSETS): web/package-lock.json deploy/web-assets.sh
	@bash deploy/web-assets.sh
	@touch $@

system-deps:
	@bash deploy/system-deps.sh

jars: system-deps
	@bash deploy/kafka/kafka.sh fetch

up: setup
	@bash deploy/stack.sh up

down:
	@bash deploy/stack.sh down

status:
	@bash deploy/stack.sh status

demo: setup
	@bash deploy/demo.sh

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

test-unit: $(INSTALLED)
	$(PYTEST) tests/unit -q

test-agents: $(INSTALLED)
	$(PYTEST) tests/agents -q

test-integration: setup
	$(PYTEST) tests/integration -q

test: setup lint typecheck test-unit test-agents test-integration

bench: setup
	@bash deploy/stack.sh up
	@$(PY) -m benches; status=$$?; bash deploy/stack.sh down; exit $$status

soak: setup
	@bash deploy/stack.sh up
	@$(PY) -m benches --only soak; status=$$?; bash deploy/stack.sh down; exit $$status

clean: down
	rm -rf var build *.egg-info

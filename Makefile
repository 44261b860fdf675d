# The two commands of the README, plus a few helpers. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= relay.yaml.example

.PHONY: run test lint schema bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "oneroute-relay needs Python 3.11 or newer; set PYTHON=python3.11 (or newer) and try again")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/relay serve -c $(CONFIG)

# The suite runs on TEST_WORKERS processes (pytest-xdist): most tests wait on sockets,
# processes and timers, so four share two cores well. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4

test: $(VENV)/.installed-test
	$(BIN)/ruff check relay tests $(wildcard bench)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check relay tests $(wildcard bench)
	$(BIN)/ruff format --check relay tests $(wildcard bench)

# Regenerate config/relay.schema.json from the config model (a test keeps them in sync).
schema: $(VENV)/.installed
	$(BIN)/python -m relay.config.schema > config/relay.schema.json

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis relay.db relay.db-wal relay.db-shm

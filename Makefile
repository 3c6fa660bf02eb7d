# Two commands on a fresh machine (Python 3.11 and make): `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint pytest loadtest bench format clean

# Each stamp records which extras are installed; editing pyproject.toml reinstalls.
$(VENV)/.local: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[local]'
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.local

run: $(VENV)/.local  ## serve on :8080 with the embedded AWS emulator
	$(BIN)/python -m app serve

test: $(VENV)/.dev lint pytest  ## lint, type-check and run the whole suite

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml

pytest: $(VENV)/.dev
	$(BIN)/pytest

loadtest: $(VENV)/.dev  ## 35 s of 16 concurrent users against uvicorn + moto server
	$(BIN)/python -m tests.load --seconds 35 --users 16

bench: $(VENV)/.dev  ## every benchmark; writes docs/benchmarks.md and its plots
	$(BIN)/python -m bench.run

format: $(VENV)/.dev
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

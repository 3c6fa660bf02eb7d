# Two commands on a fresh machine (Python 3.11 and make): `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint pytest loadtest bench format clean

# LocalStack needs Python >= 3.13 (it imports warnings.deprecated): the first one found
# that runs (pyenv's shims exist for every version but only run the selected ones, so
# its install folders are tried too). Without one, its test tier is skipped, saying why.
LOCALSTACK := .localstack
LOCALSTACK_PYTHON ?= $(shell for p in python3.14 python3.13 $$HOME/.pyenv/versions/3.1[3-9]*/bin/python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null && { echo "$$p"; break; }; done)

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

test: $(VENV)/.dev $(LOCALSTACK)/.installed lint pytest  ## lint, type-check and run the whole suite

# Installed once (about a minute), then reused: the stamp changes only with its pins.
$(LOCALSTACK)/.installed: tests/localstack/requirements.txt
	@if [ -z "$(LOCALSTACK_PYTHON)" ]; then \
		echo "No Python >= 3.13 found: the LocalStack test tier will be skipped"; \
	else \
		{ test -x $(LOCALSTACK)/bin/python || $(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK); } && \
		$(LOCALSTACK)/bin/python -m pip --disable-pip-version-check -q install \
			-r tests/localstack/requirements.txt && touch $@; \
	fi

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml

# Two workers (a test file stays on one, with its servers); then what cannot be split.
pytest: $(VENV)/.dev
	$(BIN)/pytest -n 2 --dist loadfile -m "not serial"
	$(BIN)/pytest -m serial

loadtest: $(VENV)/.dev  ## 35 s of 16 concurrent users against uvicorn + moto server
	$(BIN)/python -m tests.load --seconds 35 --users 16

bench: $(VENV)/.dev  ## every benchmark; writes docs/benchmarks.md and its plots
	$(BIN)/python -m bench.run

format: $(VENV)/.dev
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

clean:
	rm -rf $(VENV) $(LOCALSTACK) .pytest_cache .mypy_cache .ruff_cache *.egg-info

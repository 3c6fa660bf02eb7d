# Two commands on a fresh machine (Python 3.11 and make): `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint pytest pytest-serial pytest-parallel loadtest bench simulate simulate-mutants format clean

# LocalStack needs Python >= 3.13 (it imports warnings.deprecated): the first one found
# that runs (pyenv's shims exist for every version but only run the selected ones, so
# its install folders are tried too). Without one, its test tier is skipped, saying why.
LOCALSTACK := .localstack
LOCALSTACK_PYTHON ?= $(shell for p in python3.14 python3.13 $$HOME/.pyenv/versions/3.1[3-9]*/bin/python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null && { echo "$$p"; break; }; done)
# Tools whose dependencies would move ours, each in a venv of its own.
CHECKOV := .checkov
CLIENT_GENERATOR := .openapi-client
SAM_TRANSLATOR := .sam-translator

# Each stamp records which extras are installed; editing pyproject.toml reinstalls.
$(VENV)/.local: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[local]'
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.local

# ARGS=--fresh starts with an empty .data/ (where the embedded emulator keeps its state).
run: $(VENV)/.local  ## serve on :8080 with the embedded AWS emulator
	$(BIN)/python -m app serve $(ARGS)

# The tool venvs install side by side (mostly waiting on the package index), the tests
# that need a process of their own running meanwhile; then lint and the rest.
test:  ## lint, type-check and run the whole suite
	$(MAKE) -j5 pytest-serial $(LOCALSTACK)/.installed $(CLIENT_GENERATOR)/.installed \
		$(SAM_TRANSLATOR)/.installed $(CHECKOV)/.installed
	$(MAKE) lint pytest-parallel

# Installed once (about a minute), then reused: the stamp changes only with its pins.
$(LOCALSTACK)/.installed: requirements/localstack.txt
	@if [ -z "$(LOCALSTACK_PYTHON)" ]; then \
		echo "No Python >= 3.13 found: the LocalStack test tier will be skipped"; \
	else \
		{ test -x $(LOCALSTACK)/bin/python || $(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK); } && \
		$(LOCALSTACK)/bin/python -m pip --disable-pip-version-check -q install \
			-r requirements/localstack.txt && touch $@; \
	fi

# A client generated from the live schema (tests/test_generated_client.py).
$(CLIENT_GENERATOR)/.installed: requirements/openapi-client.txt
	test -x $(CLIENT_GENERATOR)/bin/python || $(PYTHON) -m venv $(CLIENT_GENERATOR)
	$(CLIENT_GENERATOR)/bin/python -m pip --disable-pip-version-check -q install \
		-r requirements/openapi-client.txt
	touch $@

# SAM's own transform, for the template tests (it pins another pydantic than ours).
$(SAM_TRANSLATOR)/.installed: requirements/sam-translator.txt
	test -x $(SAM_TRANSLATOR)/bin/python || $(PYTHON) -m venv $(SAM_TRANSLATOR)
	$(SAM_TRANSLATOR)/bin/python -m pip --disable-pip-version-check -q install \
		-r requirements/sam-translator.txt
	touch $@

# checkov, in its own venv like LocalStack (its dependencies would move ours).
$(CHECKOV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV)/bin/python || $(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip --disable-pip-version-check -q install -r requirements/checkov.txt
	touch $@

lint: $(VENV)/.dev $(CHECKOV)/.installed
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	# Every finding fixed, or skipped in the template with its reason.
	$(CHECKOV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet \
		--skip-download

# Two workers: a file whose tests share servers stays on one (tests/conftest.py groups
# them), every other test goes to whichever worker is free; then what cannot be split.
pytest: pytest-parallel pytest-serial

pytest-parallel: $(VENV)/.dev
	$(BIN)/pytest -n 2 --dist loadgroup -m "not serial"

pytest-serial: $(VENV)/.dev
	$(BIN)/pytest -m serial

loadtest: $(VENV)/.dev  ## 35 s of 16 concurrent users against uvicorn + moto server
	$(BIN)/python -m tests.load --seconds 35 --users 16

# ONLY=warm,cdn measures those sections again and keeps the rest of docs/benchmarks.json.
bench: $(VENV)/.dev  ## every benchmark; writes docs/benchmarks.md and its plots
	$(BIN)/python -m bench.run $(if $(ONLY),--only $(ONLY))

# The simulation's long run (docs/simulation.md): 1,300 histories of up to 100 steps (about
# 80 steps each on average: over 100,000), one process per core. SEED=n draws others.
SEED ?= 1
simulate: $(VENV)/.dev  ## the long simulation: every invariant after each of 100,000+ steps
	$(BIN)/python -m tests.simulation --examples 1300 --steps 100 --jobs 2 --seed $(SEED)

# Each known defect planted in a scratch copy, one at a time: the simulation must find
# every one within make test's budget.
simulate-mutants: $(VENV)/.dev  ## plant known defects; report which the simulation finds
	$(BIN)/python -m bench.mutants

format: $(VENV)/.dev
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

clean:
	rm -rf $(VENV) $(LOCALSTACK) $(CHECKOV) $(CLIENT_GENERATOR) $(SAM_TRANSLATOR) .pytest_cache .mypy_cache .ruff_cache *.egg-info

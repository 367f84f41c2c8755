# One entry per task. `make demo` and `make test` set everything up from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install demo test unit lint typecheck bench soak clean services

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml scripts/install.sh
	bash scripts/install.sh $(BIN)
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): $(BIN)/python pyproject.toml scripts/install.sh
	EXTRAS=local bash scripts/install.sh $(BIN)
	touch $(DEMO_STAMP)

install: $(STAMP)  ## create .venv and install orchestrate with every extra and the test tools

demo: $(DEMO_STAMP)  ## the customer-support demo on the embedded SQLite store, ending with its timeline
	$(BIN)/python examples/support_demo.py

services:  ## start the local services the tests use if they are down
	bash scripts/services.sh

lint: install  ## ruff
	$(BIN)/ruff check src tests examples bench scripts
	$(BIN)/ruff format --check src tests examples bench scripts

typecheck: install  ## mypy --strict
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

test: install services lint typecheck  ## lint, types and the whole test suite
	$(BIN)/pytest -q

soak: install services  ## long-running variants
	$(BIN)/pytest -q -m soak

bench: install  ## the benchmark suite (ratios to floors measured in the same run), peers included
	EXTRAS=bench bash scripts/install.sh $(BIN)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .orchestrate .pytest_cache .mypy_cache .ruff_cache bench/results

# Two entry points for a fresh clone: `make demo` and `make test`. Each creates .venv and
# installs what it needs, so nothing has to be set up beforehand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint

$(BIN)/orchestrator: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/orchestrator

install: $(BIN)/orchestrator

demo: install
	$(BIN)/orchestrator demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

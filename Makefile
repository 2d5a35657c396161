# Two entry points for a fresh clone: `make demo` and `make test`. Each creates .venv and
# installs what it needs, so nothing has to be set up beforehand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test fast install lint docs

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

# The documentation site (docs/ into site/); --strict: a broken link or anchor fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Everything CI runs: lint, types, the documentation site, and the whole suite (unit,
# integration, acceptance), with the slowest tests listed. Most tests wait on sockets, processes
# and timers, so six workers share two cores well (eight only stretched every test: the suite is
# CPU-bound there); the few that compare timings measured within themselves (marked `alone`) run
# afterwards, one at a time, so that no other test's load skews them.
test: lint docs
	$(BIN)/pytest -n 6 -m "not alone" --durations=20
	$(BIN)/pytest -m alone --durations=5

# The edit-test loop, in well under a minute: lint, types, and the unit tests (the engine's
# decisions on a fake clock, the planner, the state machine, the sandbox, the client).
fast: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest tests/unit -q

# Two entry points: `make run` (set up, then style the bundled samples) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install

.PHONY: run test setup clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/stylepipe run pipeline.yaml

test: $(STAMP)
	$(BIN)/ruff check stylepipe tests benchmarks plugins
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench:
	benchmarks/make_run.sh

clean:
	rm -rf $(VENV) outputs cache/*.db cache/??

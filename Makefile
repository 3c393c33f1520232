# `make` with no target runs what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-installed-stamp

.DEFAULT_GOAL := test
.PHONY: install lint test demo bench bench-quick bench-readme sim-bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check bulkops tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

demo: $(STAMP)
	$(BIN)/python -m bulkops.cli.demo

# The benchmark's peer, balena's Python SDK: installed only for the bench targets, never for `test`.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Long (~40 min): every case, every client, on a fresh simulator each (see bench/README.md); then
# README's benchmark block from the new results. Not part of `test`.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.readme

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

bench-readme: $(STAMP)
	$(BIN)/python -m bench.readme

# The simulator's own speed: GETs per second, a 200-id PATCH, paging at 100,000 devices.
sim-bench: $(STAMP)
	$(BIN)/python bench/sim_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two entry points for a fresh machine: `make repro` (set up, then `dvc repro` on the demo default) and
# `make test` (set up, then the test suite). Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# torch==2.13.0 resolves to the CPU wheel where only that is offered, and to the CUDA wheel on PyPI elsewhere.
# Override for another build, e.g. make repro TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-fast lint

setup: $(VENV)/.installed plots/offline.html

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

# The `dvc plots show` page template with vega, vega-lite and vega-embed inline (fetched once from the npm registry),
# so the charts render with no internet; both it and the fetched scripts are git-ignored.
plots/offline.html: plots/page.html pipeline/plots_page.py $(VENV)/.installed
	$(BIN)/python -m pipeline.plots_page

repro: setup
	dvc repro

# The whole suite, test files spread over pytest-xdist workers (one per core, at most 4) in the order
# tests/conftest.py gives them (the longest first), with the 15 slowest tests listed at the end. The tests' tiny runs
# use one thread each, so the workers keep every core busy without crowding it: 556 s of pytest on two workers from
# a fresh clone of this 2-core machine. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= auto
PARALLEL := -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder --durations 15

test: setup lint
	pytest -q $(PARALLEL)

# The fast tier: everything but the end-to-end and package-index tests.
# (in one process: its tests are short and use every core already, so workers gain nothing)
test-fast: setup lint
	pytest -q -m "not slow and not network"

# ruff with the rules in pyproject.toml, over the package, the tests and the benchmarks
lint: setup
	ruff check .

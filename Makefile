# Two entry points for a fresh machine: `make repro` (set up, then `dvc repro` on the demo default) and
# `make test` (set up, then the test suite). Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# torch==2.13.0 resolves to the CPU wheel where only that is offered, and to the CUDA wheel on PyPI elsewhere.
# Override for another build, e.g. make repro TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-fast

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

repro: setup
	dvc repro

test: setup
	pytest -q

# The fast tier: everything but the end-to-end and package-index tests (about a minute here).
test-fast: setup
	pytest -q -m "not slow and not network"

# Two commands do all set-up on a fresh machine:
#   make demo   -> .venv, install, the demo experiment into runs/demo (override WORKDIR=...)
#   make test   -> .venv, install, the test suite
# The install step reruns only when setup.cfg, pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/demo
CONFIG ?= configs/demo.py
PYTEST_ARGS ?=
# Test processes (pytest-xdist); each holds its own JAX runtime (~5 GiB at peak). Whole
# files go to one process, so a module's fixtures are built once.
TEST_WORKERS ?= 2

.PHONY: demo test lint sweep benchmark clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) experiments/run.py --config=$(CONFIG) --workdir=$(WORKDIR)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check fedgan_jax experiments studies configs tests
	$(VENV)/bin/ruff format --check fedgan_jax experiments studies configs tests

sweep: $(STAMP)
	$(PY) experiments/sweep.py --config=configs/demo.py --workdir=runs/sweep

benchmark: $(STAMP)
	$(PY) experiments/benchmark.py --json=runs/benchmark.json

clean:
	rm -rf $(VENV) runs

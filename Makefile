# The two commands of the README: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast weights release setup clean

setup: $(STAMP)

# CPU-only set-up: torch is pinned to the local 2.13.0 CPU build, installed first so that
# nothing else can resolve a (CUDA) torch from the index; torchvision is never installed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	bash scripts/setup_sandbox.sh
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# nbgrader runs alembic from PATH, hence the venv's bin first.
release: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/nbgrader generate_assignment autoencoders --force
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/nbgrader generate_assignment bestiary --force

weights: $(STAMP)
	$(PY) -m autograder weights

demo: $(STAMP)
	$(PY) -m autograder demo

clean:
	rm -rf $(VENV) demo .pytest_cache

# The two commands of the README: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint weights release setup clean

setup: $(STAMP)

# CPU-only set-up: the local 2.13.0 CPU build of torch is installed first, so that
# nothing else can resolve a (CUDA) torch from the index; torchvision is never installed.
$(STAMP): pyproject.toml scripts/setup_sandbox.sh scripts/setup_browser.sh scripts/install_tool.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	bash scripts/setup_sandbox.sh
	bash scripts/setup_browser.sh
	touch $(STAMP)

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

# nbgrader runs alembic from PATH, hence the venv's bin first.
release: $(STAMP)
	for a in $$($(PY) -c "from autograder.manifest import assignments; print(*assignments())"); do \
		PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/nbgrader generate_assignment $$a --force || exit 1; \
	done

weights: $(STAMP)
	$(PY) -m autograder weights

demo: $(STAMP)
	$(PY) -m autograder demo

clean:
	rm -rf $(VENV) demo .pytest_cache
